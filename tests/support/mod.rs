//! Test support: a private emulator (moto + sequencer's extension) per test on 127.0.0.1, the
//! `sequencer` binary pointed at it, and helpers to shape the emulated ECS world.
#![allow(dead_code)]

pub mod apiserver;
pub mod argocd;
pub mod chart;
pub mod git;
pub mod lagging_proxy;
pub mod lean_ecs;
pub mod world;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool the test scripts install: the path in `variable` (tests/run.sh sets it), else the last
/// line `script` prints after installing it (cached; quick once done).
pub fn installed(variable: &str, script: &str) -> String {
    if let Ok(path) = std::env::var(variable) {
        return path;
    }
    let out = Command::new(repo_root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(out.status.success(), "{script} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The emulator's Python: `SEQUENCER_EMULATOR_PYTHON`, else what `tests/emulator/install.sh` installs.
fn emulator_python() -> String {
    installed("SEQUENCER_EMULATOR_PYTHON", "tests/emulator/install.sh")
}

/// The log group and stream prefix of the containers `Emulator::register` gives awslogs.
pub const LOG_GROUP: &str = "/ecs/etl";
pub const LOG_PREFIX: &str = "etl";

pub struct Emulator {
    child: Child,
    pub endpoint: String,
    port: u16,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Emulator {
    pub fn start() -> Emulator {
        let mut child = Command::new(emulator_python())
            .arg(repo_root().join("tests/emulator/sequencer_emulator.py"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the emulator");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the emulator's first line");
        let endpoint = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "unexpected emulator output: {line:?}"
        );
        let port = endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port");
        Emulator {
            child,
            endpoint,
            port,
        }
    }

    /// One HTTP request to the emulator's extension, answered as JSON.
    pub fn http(&self, method: &str, path: &str, body: &Value) -> Value {
        let what = format!("{method} {path}");
        self.request(
            &what,
            method,
            path,
            &["Content-Type: application/json"],
            body,
        )
    }

    /// One AWS JSON 1.1 call (e.g. `service` "events", `target` "AWSEvents.PutEvents") to a moto
    /// service the tests have no SDK client for; moto reads the service from the credential
    /// scope and does not check the signature.
    pub fn aws_json(&self, service: &str, target: &str, body: &Value) -> Value {
        let target_header = format!("X-Amz-Target: {target}");
        let authorization = format!(
            "Authorization: AWS4-HMAC-SHA256 Credential=emulator/20261130/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let headers = [
            "Content-Type: application/x-amz-json-1.1",
            &target_header,
            &authorization,
        ];
        self.request(target, "POST", "/", &headers, body)
    }

    /// One request with `headers`, expecting 200; the answer's JSON (null when it has none).
    fn request(
        &self,
        what: &str,
        method: &str,
        path: &str,
        headers: &[&str],
        body: &Value,
    ) -> Value {
        let body = body.to_string();
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the emulator");
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let headers: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(head.contains(" 200 "), "{what} answered {head}: {payload}");
        serde_json::from_str(payload).unwrap_or(Value::Null)
    }

    pub fn inject(&self, operation: &str, kind: &str, count: u32, reason: Option<&str>) {
        self.http(
            "POST",
            "/_ext/inject",
            &json!({"operation": operation, "kind": kind, "count": count, "reason": reason}),
        );
    }

    /// The next `count` calls of `operation` answer HTTP `status` with error `code`; with
    /// `lost_answer`, each call is carried out first (its answer is what gets lost).
    pub fn inject_error(
        &self,
        operation: &str,
        count: u32,
        status: u16,
        code: &str,
        lost_answer: bool,
    ) {
        let kind = if lost_answer { "lost-answer" } else { "error" };
        self.http(
            "POST",
            "/_ext/inject",
            &json!({"operation": operation, "kind": kind, "count": count, "status": status, "code": code}),
        );
    }

    /// Eventual-consistency switches (see the emulator's doc): `listLagSeconds`, `listLimit`,
    /// `earlyMissingSeconds`.
    pub fn consistency(&self, switches: Value) {
        self.http("POST", "/_ext/consistency", &switches);
    }

    pub fn finish_task(
        &self,
        task_arn: &str,
        exit_code: Option<i32>,
        stop_code: &str,
        reason: &str,
    ) {
        self.http("POST", "/_ext/ecs/finish-task", &json!({"task": task_arn, "exitCode": exit_code, "stopCode": stop_code, "reason": reason}));
    }

    /// Every ECS call the emulator received, in order.
    pub fn calls(&self) -> Vec<Value> {
        self.http("GET", "/_ext/calls", &json!({}))["calls"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn calls_of(&self, operation: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["operation"] == operation)
            .collect()
    }

    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ecs::config::Credentials::new(
                "emulator", "emulator", None, None, "test",
            ))
            .load()
            .await
    }

    pub async fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.sdk_config().await)
    }

    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config().await)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The setup most tests start from: an emulator with the cluster `etl` (see [`Self::cluster`])
    /// and one task definition per `(family, env)`, each a single container `app` whose `env`
    /// sets the emulated behaviour (see [`Self::task_definition`]).
    pub async fn with_jobs(jobs: &[(&str, &[(&str, &str)])]) -> Emulator {
        let emu = Emulator::start();
        emu.cluster("etl").await;
        for (family, env) in jobs {
            emu.task_definition(family, &["app"], env).await;
        }
        emu
    }

    /// A cluster whose default capacity provider is FARGATE (so a RunTask without launchType
    /// works, as it would on such a cluster in AWS).
    pub async fn cluster(&self, name: &str) {
        use aws_sdk_ecs::types::CapacityProviderStrategyItem;
        let strategy = CapacityProviderStrategyItem::builder()
            .capacity_provider("FARGATE")
            .weight(1)
            .build()
            .expect("valid");
        self.ecs()
            .await
            .create_cluster()
            .cluster_name(name)
            .capacity_providers("FARGATE")
            .default_capacity_provider_strategy(strategy)
            .send()
            .await
            .expect("create cluster");
    }

    /// Registers `family` with one container per name in `containers`, the first essential; `env`
    /// becomes the emulated containers' behaviour (SEQ_EMU_SECONDS, SEQ_EMU_EXIT_CODE, ...).
    /// Returns its ARN.
    pub async fn task_definition(
        &self,
        family: &str,
        containers: &[&str],
        env: &[(&str, &str)],
    ) -> String {
        let unlogged: Vec<(&str, &str)> = containers.iter().map(|c| (*c, "none")).collect();
        self.register_containers(family, &unlogged, env, false)
            .await
    }

    /// Registers `family` with one essential container per (name, log configuration): `awslogs`
    /// (group [`LOG_GROUP`], prefix [`LOG_PREFIX`]), `noprefix` (awslogs without a prefix),
    /// `splunk`, or none; `env` as in `task_definition`. Returns its ARN.
    pub async fn register(
        &self,
        family: &str,
        containers: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> String {
        self.register_containers(family, containers, env, true)
            .await
    }

    async fn register_containers(
        &self,
        family: &str,
        containers: &[(&str, &str)],
        env: &[(&str, &str)],
        all_essential: bool,
    ) -> String {
        use aws_sdk_ecs::types::{
            ContainerDefinition, KeyValuePair, LogConfiguration, LogDriver, NetworkMode,
        };
        let mut request = self
            .ecs()
            .await
            .register_task_definition()
            .family(family)
            .network_mode(NetworkMode::Bridge);
        for (i, (name, logging)) in containers.iter().enumerate() {
            let logs = match *logging {
                "awslogs" => Some(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .options("awslogs-group", LOG_GROUP)
                        .options("awslogs-region", "us-east-1")
                        .options("awslogs-stream-prefix", LOG_PREFIX),
                ),
                "noprefix" => Some(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Awslogs)
                        .options("awslogs-group", LOG_GROUP),
                ),
                "splunk" => Some(
                    LogConfiguration::builder()
                        .log_driver(LogDriver::Splunk)
                        .options("splunk-url", "https://splunk.example:8088"),
                ),
                _ => None,
            };
            let mut c = ContainerDefinition::builder()
                .name(*name)
                .image(format!("example/{family}"))
                .memory(256)
                .essential(all_essential || i == 0);
            for (k, v) in env {
                c = c.environment(KeyValuePair::builder().name(*k).value(*v).build());
            }
            if let Some(logs) = logs {
                c = c.log_configuration(logs.build().expect("log configuration"));
            }
            request = request.container_definitions(c.build());
        }
        let out = request.send().await.expect("register task definition");
        out.task_definition()
            .and_then(|t| t.task_definition_arn())
            .unwrap_or_default()
            .to_owned()
    }

    /// `sequencer` with this emulator as its AWS.
    pub fn sequencer(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sequencer"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "emulator")
            .env("AWS_SECRET_ACCESS_KEY", "emulator")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("HOME", std::env::temp_dir())
            .current_dir(repo_root());
        cmd
    }

    /// `sequencer run FILE --poll-interval 1`: a batch file run as most tests run one.
    pub fn run_batch(&self, file: &Path) -> Command {
        let mut cmd = self.sequencer();
        cmd.arg("run").arg(file).args(["--poll-interval", "1"]);
        cmd
    }

    /// Waits until `check` holds, for at most `limit`.
    pub fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Emulator) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check(self) {
                return v;
            }
            assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// ARNs of the tasks RunTask started, in order.
    pub async fn task_arns(&self, cluster: &str) -> Vec<String> {
        let ecs = self.ecs().await;
        let mut arns = Vec::new();
        for status in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let out = ecs
                .list_tasks()
                .cluster(cluster)
                .desired_status(status)
                .send()
                .await
                .expect("list tasks");
            arns.extend(out.task_arns().iter().cloned());
        }
        arns
    }
}

/// A batch file written to a temporary directory.
/// One step of a batch file on cluster `etl` (FARGATE), with `extra` step keys (indented lines).
pub fn batch_step(name: &str, family: &str, extra: &str) -> String {
    format!(
        "- {name}:\n    type: ecs_task\n{extra}    parameters:\n      cluster: etl\n      task_definition: {family}\n      launch_type: FARGATE\n"
    )
}

pub struct TempBatch {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn batch(text: &str) -> TempBatch {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("batch.yml");
    std::fs::write(&path, text).expect("write batch");
    TempBatch { dir, path }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn finish(output: Output) -> Run {
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn run(cmd: &mut Command) -> Run {
    finish(cmd.output().expect("run sequencer"))
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The JSON events of a `--output json` run.
pub fn events(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
