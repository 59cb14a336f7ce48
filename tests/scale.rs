//! The scale benchmark: N Sequences of two steps created at once against the real kube-apiserver
//! and the lean ECS endpoint (`support/lean_ecs.rs`), with the real controller binary. The first
//! steps run until released; the controller is SIGKILLed and restarted while they run; then they
//! are released and the second steps run to the end. It prints the figures README reports.
//!
//! Quick mode (the test command): N = 40, and the protocol's figures are asserted: each step
//! launched once, nothing looked up, every running task described each poll cycle in at most
//! ⌈N/100⌉ + 1 calls, no launch repeated after the restart. Timings are printed, never asserted.
//! Full mode: `SEQUENCER_SCALE_N=10000 cargo test --release --test scale -- --nocapture`
//! (`benches/scale.sh` does that), with `SEQUENCER_SCALE_ARGS` for extra controller flags.
//! `SEQUENCER_SCALE_ROLES=1`: a SequencePolicy gives the namespace an IAM role, so every Sequence
//! signs its calls in an STS session of its own (asserted: one per Sequence).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ListParams, PostParams};
use sequencer::api::sequence::Sequence;
use serde_json::json;
use support::apiserver::KubeServer;
use support::lean_ecs::{LeanEcs, now};
use support::world::{http_address, http_get, metric};

const HELD: &str = "held";
const QUICK: &str = "quick";

struct Bench {
    poll: f64,
    server: KubeServer,
    client: kube::Client,
    ecs: LeanEcs,
    logs: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl Bench {
    fn controller(&self, name: &str) -> (Child, PathBuf) {
        let log = self.logs.path().join(format!("{name}.log"));
        // SEQUENCER_SCALE_WRAP runs the controller under a profiler, `{name}` replaced by the
        // controller's name: "heaptrack -o /tmp/ht/{name}" profiles each in a file of its own.
        let wrap = std::env::var("SEQUENCER_SCALE_WRAP")
            .unwrap_or_default()
            .replace("{name}", name);
        let mut wrap = wrap.split_whitespace();
        let mut command = match wrap.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command.args(wrap).arg(env!("CARGO_BIN_EXE_sequencer"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_sequencer")),
        };
        // A group of its own: a SIGKILL reaches the controller under a wrapper too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("AWS_ENDPOINT_URL", &self.ecs.endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("KUBECONFIG", &self.server.kubeconfig)
            .env("RUST_LOG", "sequencer=info,warn")
            .args([
                "controller",
                "--http-address",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(["--poll-interval", &format!("{}", self.poll)])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the controller");
        (child, log)
    }

    /// The API server's own request counters: (resource, verb) → requests.
    async fn apiserver_requests(&self) -> BTreeMap<(String, String), f64> {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("request");
        let text = self
            .client
            .request_text(request)
            .await
            .expect("apiserver /metrics");
        let mut counts = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
        {
            let Some((labels, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .split(&format!("{key}=\"")[..])
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            let value: f64 = value.parse().unwrap_or(0.0);
            *counts
                .entry((label("resource"), label("verb")))
                .or_insert(0.0) += value;
        }
        counts
    }

    async fn wait(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> f64 {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        start.elapsed().as_secs_f64()
    }

    /// Stops `sample` held tasks, two a second, while the others run; waits for the steps after
    /// them; returns the seconds from each stop to the RunTask of the next step, sorted.
    async fn sampled_stops(&self, sample: usize, budget: Duration) -> Vec<f64> {
        let launched_before = self.ecs.task_count();
        let mut stops: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..sample {
            for (started_by, at) in self.ecs.release_some(HELD, 1) {
                stops.insert(run_of(&started_by), at);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.wait("the sampled second steps launched", budget, || {
            self.ecs.task_count() >= launched_before + sample
        })
        .await;
        let mut latencies: Vec<f64> = self
            .ecs
            .calls()
            .iter()
            .filter(|c| c.operation == "RunTask" && c.created)
            .filter_map(|c| {
                let started_by = c.started_by.as_deref()?;
                let stopped = stops.get(&run_of(started_by))?;
                (c.time > *stopped).then(|| c.time - stopped)
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        latencies
    }

    async fn succeeded(&self) -> usize {
        let api: Api<Sequence> = Api::namespaced(self.client.clone(), "default");
        let mut count = 0;
        let mut params = ListParams::default().limit(500);
        loop {
            let page = api.list(&params).await.expect("list Sequences");
            count += page
                .items
                .iter()
                .filter(|s| {
                    s.status.as_ref().and_then(|st| st.phase.as_deref()) == Some("Succeeded")
                })
                .count();
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return count,
            }
        }
    }
}

/// Resident memory of a process, current and peak (VmRSS, VmHWM), in MiB.
fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds a process has used (user + system).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// SIGKILL to the controller's process group (the controller, and a profiler wrapping it).
fn sigkill(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
}

fn controller_metric(log: &Path, sample: &str) -> f64 {
    metric(&http_get(&http_address(log), "/metrics").1, sample)
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_benchmark() {
    let n: usize = std::env::var("SEQUENCER_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let quick = std::env::var("SEQUENCER_SCALE_N").is_err();
    // Push mode: stops arrive as ECS task state change events through a queue; the poll is
    // the slow safety net, and its interval is the benchmark's cycle.
    let push = std::env::var("SEQUENCER_SCALE_PUSH").is_ok_and(|v| v == "1");
    let mut extra_args: Vec<String> = std::env::var("SEQUENCER_SCALE_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let server = KubeServer::start();
    let client = server.client().await;
    support::apiserver::install_crd(&client, &sequencer::api::sequence::crd()).await;
    // Roles mode: a SequencePolicy gives the namespace an IAM role, so every Sequence acts in an
    // STS session of its own (the lean endpoint answers AssumeRole).
    let roles = std::env::var("SEQUENCER_SCALE_ROLES").is_ok_and(|v| v == "1");
    if roles {
        use sequencer::api::sequence_policy::{SequencePolicy, crd};
        support::apiserver::install_crd(&client, &crd()).await;
        let policy = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "SequencePolicy",
            "metadata": {"name": "bench"},
            "spec": {"namespaces": {"names": ["default"]},
                     "aws": {"roleArn": "arn:aws:iam::123456789012:role/bench"}}});
        Api::<SequencePolicy>::all(client.clone())
            .create(
                &PostParams::default(),
                &serde_json::from_value(policy).unwrap(),
            )
            .await
            .expect("create the policy");
    }
    let ecs = LeanEcs::start().await;
    let poll = if push {
        ecs.push();
        extra_args.extend([
            "--task-events-queue-url".into(),
            ecs.queue_url(),
            "--task-events-poll-interval".into(),
            PUSH_SAFETY_POLL.to_string(),
        ]);
        PUSH_SAFETY_POLL as f64
    } else {
        5.0
    };
    let bench = Bench {
        poll,
        server,
        client,
        ecs,
        logs: tempfile::tempdir().expect("temp dir"),
        extra_args,
    };
    let mut figures: Vec<(String, String)> = Vec::new();
    let mut figure = |name: &str, value: String| {
        println!("{name}: {value}");
        figures.push((name.to_owned(), value));
    };
    let budget = Duration::from_secs(120 + (n as u64) / 5);

    let (mut controller, log) = bench.controller("controller");
    let pid = controller.id();
    http_address(&log);
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak_rss = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                let (current, _) = rss(pid);
                peak_rss.fetch_max(current as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let before = bench.apiserver_requests().await;

    // Launch: N Sequences created at once (32 creates in flight).
    let started = Instant::now();
    let api: Api<Sequence> = Api::namespaced(bench.client.clone(), "default");
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                    "metadata": {"name": format!("scale-{i:05}")},
                    "spec": {"steps": [step("extract", HELD), step("load", QUICK)]}});
                api.create(
                    &PostParams::default(),
                    &serde_json::from_value(object).unwrap(),
                )
                .await
                .expect("create");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let created = started.elapsed().as_secs_f64();
    bench
        .wait("every first step launched", budget, || {
            bench.ecs.task_count() >= n
        })
        .await;
    let launched = started.elapsed().as_secs_f64();
    // Recorded too: each launch's answer written to its Sequence, its task handed to the poller.
    let mut watched = 0.0;
    while watched < n as f64 {
        assert!(
            started.elapsed() < budget,
            "only {watched} of {n} launches recorded"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        watched = controller_metric(&log, "sequencer_running_tasks");
    }
    let recorded = started.elapsed().as_secs_f64();
    figure("Sequences", n.to_string());
    figure("created in", format!("{created:.1} s"));
    figure(
        "every first step launched after",
        format!("{launched:.1} s (RunTask), {recorded:.1} s (recorded in .status and polled)"),
    );

    // Steady: every task running; two cycles to settle, three to count.
    tokio::time::sleep(Duration::from_secs_f64(2.0 * bench.poll)).await;
    let window_start = now();
    tokio::time::sleep(Duration::from_secs_f64(3.0 * bench.poll)).await;
    let calls = bench.ecs.calls();
    let described: Vec<_> = calls
        .iter()
        .filter(|c| c.operation == "DescribeTasks" && c.time >= window_start)
        .collect();
    let per_cycle = described.len() as f64 / 3.0;
    let arns_per_call =
        described.iter().map(|c| c.arns).sum::<usize>() as f64 / described.len().max(1) as f64;
    let unpolled = bench.ecs.undescribed_since(HELD, window_start);
    let watched = controller_metric(&log, "sequencer_running_tasks");
    if unpolled > 0 {
        let offsets: Vec<String> = described
            .iter()
            .map(|c| format!("{:.1}s:{}", c.time - window_start, c.arns))
            .collect();
        println!(
            "DescribeTasks in the window (offset:ARNs): {}",
            offsets.join(" ")
        );
    }
    let (rss_now, _) = rss(pid);
    figure(
        "controller RSS while all run",
        format!(
            "{rss_now:.0} MiB ({:.1} KiB per Sequence)",
            rss_now * 1024.0 / n as f64
        ),
    );
    figure(
        "DescribeTasks per poll cycle",
        format!(
            "{per_cycle:.1} ({arns_per_call:.1} ARNs each); running tasks not described in 3 cycles: {unpolled}; the poller watches {watched}"
        ),
    );
    let run_tasks = calls.iter().filter(|c| c.operation == "RunTask").count();
    let list_tasks = calls.iter().filter(|c| c.operation == "ListTasks").count();
    figure(
        "RunTask calls per launch",
        format!("{:.3} ({run_tasks} for {n})", run_tasks as f64 / n as f64),
    );
    figure("ListTasks calls while launching", list_tasks.to_string());
    // Stops one at a time while the others run, from each stop to the RunTask of the next step.
    let sample = (n / 4).min(40);
    let steady = bench.sampled_stops(sample, budget).await;
    let how = if push {
        format!("pushed events, safety poll every {} s", bench.poll)
    } else {
        format!("poll interval {} s", bench.poll)
    };
    let writes_before_restart = bench.apiserver_requests().await;

    // Cold start: SIGKILL, restart, until every running task is described again.
    let calls_before = bench.ecs.calls().len();
    let cpu_first = cpu_seconds(&pid.to_string());
    sigkill(&mut controller);
    let restart = now();
    let (mut controller, log) = bench.controller("restarted");
    let pid = controller.id();
    let cold = bench
        .wait(
            "every running task described after the restart",
            budget,
            || bench.ecs.undescribed_since(HELD, restart) == 0,
        )
        .await;
    let after_restart: Vec<_> = bench.ecs.calls().into_iter().skip(calls_before).collect();
    let rerun = after_restart
        .iter()
        .filter(|c| c.operation == "RunTask")
        .count();
    let relisted = after_restart
        .iter()
        .filter(|c| c.operation == "ListTasks")
        .count();
    figure(
        "cold start (restart until every running task is described)",
        format!("{cold:.1} s; RunTask {rerun}, ListTasks {relisted} after the restart"),
    );

    // The same stops again, now while the restarted controller works through its backlog.
    let restarted = bench.sampled_stops(sample, budget).await;
    for (when, latencies) in [("steady", &steady), ("just after the restart", &restarted)] {
        figure(
            &format!("stop -> next RunTask, {when}"),
            format!(
                "p50 {:.2} s, p99 {:.2} s over {} stops while the rest run ({how})",
                percentile(latencies, 0.5),
                percentile(latencies, 0.99),
                latencies.len(),
            ),
        );
    }
    // Then every other task stops at once: the burst of second steps, at the pace ECS accepts.
    let released = bench.ecs.release(HELD);
    bench
        .wait("every second step launched", budget, || {
            bench.ecs.task_count() >= 2 * n
        })
        .await;
    figure(
        "the rest released at once: every second step launched after",
        format!("{:.1} s", now() - released),
    );
    let start_done = Instant::now();
    loop {
        let done = bench.succeeded().await;
        if done == n {
            break;
        }
        assert!(
            start_done.elapsed() < budget,
            "only {done} of {n} Sequences succeeded"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    figure(
        "release until all Succeeded",
        format!("{:.1} s", released_elapsed(released)),
    );
    let (rss_end, hwm) = rss(pid);
    let sampled_peak = peak_rss.load(Ordering::Relaxed);
    figure(
        "controller RSS peak",
        format!(
            "{sampled_peak} MiB before the restart, {hwm:.0} MiB after it (now {rss_end:.0} MiB)"
        ),
    );
    let stale_reads = controller_metric(&log, "sequencer_stale_cache_reads_total");
    let cpu_second = cpu_seconds(&pid.to_string());
    figure(
        "controller CPU",
        format!(
            "{:.1} s before the restart, {cpu_second:.1} s after; benchmark process (lean ECS, client) {:.1} s",
            cpu_first,
            cpu_seconds("self")
        ),
    );
    sampler.abort();

    let after = bench.apiserver_requests().await;
    let delta = |map: &BTreeMap<(String, String), f64>,
                 from: &BTreeMap<(String, String), f64>,
                 resource: &str,
                 writes_only: bool| {
        map.iter()
            .filter(|((r, verb), _)| {
                r == resource
                    && (!writes_only
                        || matches!(verb.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
            })
            .map(|(k, v)| v - from.get(k).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    // The benchmark's own creates are not the controller's writes.
    let sequence_writes = delta(&after, &before, "sequences", true) - n as f64;
    let event_writes = delta(&after, &before, "events", true);
    let all: f64 = after
        .iter()
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0))
        .sum::<f64>()
        - n as f64;
    figure(
        "Kubernetes writes per step",
        format!(
            "{:.2} to Sequences, {:.2} Events",
            sequence_writes / (2 * n) as f64,
            event_writes / (2 * n) as f64
        ),
    );
    figure(
        "API server requests per Sequence",
        format!(
            "{:.1} (all resources and verbs, the benchmark's listing included)",
            all / n as f64
        ),
    );
    figure("stale cache reads", format!("{stale_reads}"));
    if push {
        let (received, deleted) = bench.ecs.messages();
        figure(
            "task state change messages",
            format!("{received} received, {deleted} deleted"),
        );
    }
    let sessions: std::collections::HashSet<String> = bench
        .ecs
        .calls()
        .into_iter()
        .filter(|c| c.operation == "AssumeRole")
        .filter_map(|c| c.started_by)
        .collect();
    if roles {
        let assumed = bench
            .ecs
            .calls()
            .iter()
            .filter(|c| c.operation == "AssumeRole")
            .count();
        figure(
            "AssumeRole calls (roles mode)",
            format!("{assumed} for {} sessions", sessions.len()),
        );
    }
    let first_phase_writes = delta(&writes_before_restart, &before, "sequences", true) - n as f64;
    sigkill(&mut controller);

    if let Ok(path) = std::env::var("SEQUENCER_SCALE_REPORT") {
        let report: serde_json::Map<String, serde_json::Value> =
            figures.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap())
            .expect("write the report");
    }

    // The protocol's figures hold at any N; timings are only reported.
    if roles {
        // A session per Sequence, and the namespace's for the shared DescribeTasks.
        assert!(sessions.contains("sequencer-default"), "{sessions:?}");
        let missing = (0..n)
            .filter(|i| !sessions.contains(&format!("sequencer-default-scale-{i:05}")))
            .count();
        assert_eq!(
            missing, 0,
            "Sequences that acted in no session of their own"
        );
    }
    assert_eq!(run_tasks, n, "one RunTask per launch, none re-issued");
    assert_eq!(
        list_tasks, 0,
        "no launch looked up without a restart or a lost answer"
    );
    assert_eq!(rerun, 0, "no RunTask for a launched step after the restart");
    assert_eq!(unpolled, 0, "every running task is described each cycle");
    for latencies in [&steady, &restarted] {
        assert_eq!(
            latencies.len(),
            sample,
            "each sampled stop led to one launch"
        );
    }
    assert!(
        per_cycle <= (n.div_ceil(100) + 1) as f64,
        "{per_cycle} DescribeTasks per cycle for {n} tasks"
    );
    assert_eq!(
        bench
            .ecs
            .calls()
            .iter()
            .filter(|c| c.operation == "RunTask")
            .count(),
        2 * n,
        "every step launched exactly once"
    );
    assert!(first_phase_writes > 0.0);
    // Each step: its launch recorded, its answer recorded, its end recorded with the next launch;
    // the finalizer and the run's end make up for the first step's.
    assert!(
        sequence_writes <= 3.0 * (2 * n) as f64,
        "{sequence_writes} writes to Sequences for {} steps",
        2 * n
    );
    if quick {
        println!("(quick mode: SEQUENCER_SCALE_N=1000 for the figures README reports)");
    }
}

/// The safety-net poll interval in push mode, in seconds.
const PUSH_SAFETY_POLL: u64 = 30;

/// The run a startedBy names (`<label>-<run hash>-<step>-<attempt>`): its label and run hash.
fn run_of(started_by: &str) -> String {
    started_by
        .splitn(3, '-')
        .take(2)
        .collect::<Vec<_>>()
        .join("-")
}

fn released_elapsed(released: f64) -> f64 {
    now() - released
}

fn step(name: &str, family: &str) -> serde_json::Value {
    json!({"name": name, "type": "ecs_task", "parameters": {"cluster": "etl", "taskDefinition": format!("{family}:1"), "launchType": "FARGATE"}})
}
