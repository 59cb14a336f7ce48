//! A kube-apiserver + etcd, the AWS emulator and `sequencer controller` processes for the
//! controller tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use sequencer::api::sequence::Sequence;
use serde_json::{Value, json};

use super::Emulator;
use super::apiserver::KubeServer;

pub struct World {
    pub emu: Emulator,
    pub server: KubeServer,
    pub client: ::kube::Client,
    pub logs: tempfile::TempDir,
    /// The controllers started (PID, start time), killed when the World goes (a failed test
    /// never stops its own).
    controllers: Mutex<Vec<(u32, Option<u64>)>>,
}

impl Drop for World {
    fn drop(&mut self) {
        let started = self
            .controllers
            .get_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        for (pid, since) in started {
            // Only the very process started (same start time): a stopped one's PID may have been
            // given to another process since, another test's controller included.
            if since.is_some() && start_time(pid) == since {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// When process `pid` started (in clock ticks after boot, /proc/PID/stat's 22nd field).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

impl World {
    pub async fn start() -> World {
        let emu = Emulator::start();
        emu.cluster("etl").await;
        emu.task_definition(
            "quick",
            &["app"],
            &[("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "0")],
        )
        .await;
        emu.task_definition(
            "bad",
            &["app"],
            &[("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "3")],
        )
        .await;
        emu.task_definition("slow", &["app"], &[("SEQ_EMU_SECONDS", "600")])
            .await;
        emu.task_definition("steady", &["app"], &[("SEQ_EMU_SECONDS", "3")])
            .await;
        let server = KubeServer::start();
        let client = server.client().await;
        super::apiserver::install_crd(&client, &sequencer::api::sequence::crd()).await;
        World {
            emu,
            server,
            client,
            logs: tempfile::tempdir().unwrap(),
            controllers: Mutex::new(Vec::new()),
        }
    }

    /// A controller with JSON logs and its HTTP endpoints on a free port.
    pub fn controller(&self) -> Child {
        self.controller_with(&[]).0
    }

    /// A controller with extra flags; returns it and the file it logs to (JSON lines).
    pub fn controller_with(&self, args: &[&str]) -> (Child, PathBuf) {
        self.controller_as(&self.server.kubeconfig, args)
    }

    /// A controller with extra flags and environment variables.
    pub fn controller_with_env(&self, args: &[&str], env: &[(&str, &Path)]) -> (Child, PathBuf) {
        self.spawn_controller(&self.server.kubeconfig, args, env)
    }

    /// The same, acting with the identity `kubeconfig` holds (e.g. a ServiceAccount's token).
    pub fn controller_as(&self, kubeconfig: &Path, args: &[&str]) -> (Child, PathBuf) {
        self.spawn_controller(kubeconfig, args, &[])
    }

    fn spawn_controller(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> (Child, PathBuf) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = self.logs.path().join(format!(
            "controller-{}.log",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let log = std::fs::File::create(&path).unwrap();
        let child = self
            .emu
            .sequencer()
            .args([
                "controller",
                "--http-address",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(args)
            .envs(env.iter().copied())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "sequencer=debug,warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the controller");
        if let Ok(mut started) = self.controllers.lock() {
            started.push((child.id(), start_time(child.id())));
        }
        (child, path)
    }

    pub fn sequences(&self) -> Api<Sequence> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub async fn create(&self, name: &str, steps: Value) {
        let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": name},
                            "spec": {"steps": steps, "pollIntervalSeconds": 1}});
        self.create_object(object).await;
    }

    /// Creates the Sequence `object` (JSON) in `default`.
    pub async fn create_object(&self, object: Value) {
        self.sequences()
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .expect("create");
    }

    /// Waits until condition `type_` of `name` is True; returns the Sequence.
    pub async fn wait_condition(&self, name: &str, type_: &str, limit: Duration) -> Sequence {
        let start = Instant::now();
        loop {
            let seq = self.sequences().get(name).await.expect("get");
            let hit = seq.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == "True")
            });
            if hit {
                return seq;
            }
            assert!(
                start.elapsed() < limit,
                "{name} never became {type_}: {:#?}",
                seq.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl World {
    /// Waits until condition `type_` of `namespace/name` is True; returns the Sequence and the
    /// condition's reason and message.
    pub async fn wait_condition_in(
        &self,
        namespace: &str,
        name: &str,
        type_: &str,
    ) -> (Sequence, String, String) {
        let api: Api<Sequence> = Api::namespaced(self.client.clone(), namespace);
        let start = Instant::now();
        loop {
            let seq = api.get(name).await.expect("get");
            let found = seq.status.as_ref().and_then(|s| {
                s.conditions
                    .iter()
                    .find(|c| c.type_ == type_ && c.status == "True")
                    .map(|c| (c.reason.clone(), c.message.clone()))
            });
            if let Some((reason, message)) = found {
                return (seq, reason, message);
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{namespace}/{name} never became {type_}: {:#?}",
                seq.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The condition of `type_`, which the controller always writes.
pub fn condition_of(
    status: &sequencer::api::sequence::SequenceStatus,
    type_: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let found = status.conditions.iter().find(|c| c.type_ == type_);
    found
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

impl World {
    /// Every task ECS holds in cluster `etl` (running and stopped): ARN → startedBy.
    pub async fn task_owners(&self) -> std::collections::BTreeMap<String, String> {
        let ecs = self.emu.ecs().await;
        let arns = self.emu.task_arns("etl").await;
        let mut owners = std::collections::BTreeMap::new();
        for chunk in arns.chunks(100) {
            let out = ecs
                .describe_tasks()
                .cluster("etl")
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .expect("describe tasks");
            for task in out.tasks() {
                owners.insert(
                    task.task_arn().unwrap_or_default().to_owned(),
                    task.started_by().unwrap_or_default().to_owned(),
                );
            }
        }
        owners
    }

    /// How many tasks ECS holds for each startedBy.
    pub async fn tasks_by_started_by(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for started_by in self.task_owners().await.into_values() {
            *counts.entry(started_by).or_insert(0) += 1;
        }
        counts
    }
}

impl World {
    /// How many times each Event reason was reported in `default` (a repeated Event is one
    /// object with a series count).
    pub async fn event_counts(&self) -> std::collections::BTreeMap<String, i32> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), "default");
        let mut counts = std::collections::BTreeMap::new();
        for event in events
            .list(&Default::default())
            .await
            .expect("events")
            .items
        {
            let times = event.series.as_ref().map_or(1, |s| s.count);
            *counts.entry(event.reason.unwrap_or_default()).or_insert(0) += times;
        }
        counts
    }

    /// The notes of the Events with `reason` in `default`, once there are at least `count`
    /// (Events follow the status write a test usually waits for).
    pub async fn wait_event_notes(&self, reason: &str, count: usize) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), "default");
        let start = Instant::now();
        loop {
            let notes: Vec<String> = events
                .list(&Default::default())
                .await
                .expect("events")
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .filter_map(|e| e.note)
                .collect();
            if notes.len() >= count {
                return notes;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "fewer than {count} {reason} Events: {notes:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until an Event with each of `reasons` exists (Events follow the status write that
    /// a test usually waits for); returns the counts.
    pub async fn wait_events(&self, reasons: &[&str]) -> std::collections::BTreeMap<String, i32> {
        let start = Instant::now();
        loop {
            let counts = self.event_counts().await;
            if reasons.iter().all(|r| counts.contains_key(*r)) {
                return counts;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no event for some of {reasons:?}: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn step(name: &str, family: &str) -> Value {
    json!({"name": name, "type": "ecs_task", "parameters": {"cluster": "etl", "taskDefinition": format!("{family}:1"), "launchType": "FARGATE"}})
}

/// Stops a controller the way Kubernetes does (SIGTERM) and waits for it.
pub fn stop(mut child: Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The controller's log lines (JSON objects) so far.
pub fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The address the controller serves /metrics on, from its log.
pub fn http_address(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Some(address) = log_lines(path)
            .iter()
            .find_map(|l| l["address"].as_str().map(str::to_owned))
        {
            return address;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the controller never said where it serves"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET on 127.0.0.1: (status code, body).
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// The value of one sample in a Prometheus text exposition (0 when absent).
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
