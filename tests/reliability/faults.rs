//! The faults of the reliability run besides the kills and the emulator's chaos: a concurrent
//! writer (409s), an etcd compaction and API-server restart (410 Gone), malformed Sequences and
//! batch files applied while the valid ones run; and what the controller's logs show of them.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::ledger::Design;
use super::malformed;
use super::support::world::World;

/// Patches an annotation of every valid Sequence twice a second, so the controller's guarded
/// status writes meet resourceVersions that moved under them (409 Conflict).
pub struct ConflictingWriter {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ConflictingWriter {
    pub fn start(client: kube::Client, designs: &[Design]) -> ConflictingWriter {
        let names: Vec<String> = designs.iter().map(|d| d.name.clone()).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicUsize::new(0));
        let (flag, counter) = (stop.clone(), writes.clone());
        let task = tokio::spawn(async move {
            let api: Api<sequencer::api::sequence::Sequence> = Api::namespaced(client, "default");
            let mut tick = 0u64;
            while !flag.load(Ordering::Relaxed) {
                tick += 1;
                for name in &names {
                    let patch = json!({"metadata": {"annotations": {"reliability.sequencer.dev/tick": tick.to_string()}}});
                    if api
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .is_ok()
                    {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        ConflictingWriter { stop, writes, task }
    }

    /// Stops it; returns how many writes it made.
    pub async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.writes.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct ApiServerFaults {
    pub restarts: usize,
    pub compacted_to: i64,
    /// What a watch from a resourceVersion before the compaction was answered.
    pub old_watch_answer: String,
}

impl ApiServerFaults {
    /// Compacts etcd's history, restarts kube-apiserver, and checks that a watch from before the
    /// compaction is now answered 410 Gone (so the controller's own watch must relist).
    pub async fn compact_and_restart(&mut self, world: &World) {
        let list = world
            .client
            .request_text(
                http::Request::get(
                    "/apis/sequencer.dev/v1alpha1/namespaces/default/sequences?limit=1",
                )
                .body(Vec::new())
                .expect("request"),
            )
            .await;
        let old = list
            .ok()
            .and_then(|text| {
                #[derive(serde::Deserialize)]
                struct ListMeta {
                    metadata: Value,
                }
                serde_json::from_str::<ListMeta>(&text).ok()
            })
            .and_then(|l| l.metadata["resourceVersion"].as_str().map(str::to_owned))
            .unwrap_or_default();
        // Move the revision on, so the compaction leaves `old` behind.
        tokio::time::sleep(Duration::from_secs(2)).await;
        self.compacted_to = tokio::task::block_in_place(|| world.server.compact_etcd());
        tokio::task::block_in_place(|| world.server.restart_apiserver());
        self.restarts += 1;
        let path = format!(
            "/apis/sequencer.dev/v1alpha1/namespaces/default/sequences?watch=1&resourceVersion={old}&timeoutSeconds=2"
        );
        let answer = world
            .client
            .request_text(http::Request::get(path).body(Vec::new()).expect("request"))
            .await;
        self.old_watch_answer = match answer {
            Err(kube::Error::Api(status)) => format!("{} {}", status.code, status.reason),
            Ok(text) if text.contains("\"code\":410") => "410 Expired (as a watch event)".into(),
            Ok(text) => format!("not 410: {}", text.chars().take(200).collect::<String>()),
            Err(e) => format!("error {e}"),
        };
    }
}

#[derive(Default, Debug)]
pub struct MalformedFigures {
    pub total: usize,
    pub by_api_server: usize,
    pub by_controller: usize,
    pub refused_with_place: usize,
    pub failures: Vec<String>,
}

/// Hand-written malformed Sequences beside the generated ones: (label, spec, place).
fn hand_written() -> Vec<(String, Value, Vec<String>)> {
    let mut deep = json!(0);
    for _ in 0..1000 {
        deep = json!({ "a": deep });
    }
    let step = |extra: Value| {
        let mut body = json!({"name": "malformed-hand", "type": "ecs_task",
            "parameters": {"cluster": "etl", "taskDefinition": "quick:1", "launchType": "FARGATE"}});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "nested 1000 levels deep",
            json!({"steps": [step(json!({"deep": deep}))]}),
            "nested more than 128 levels",
        ),
        ("no steps", json!({"steps": []}), "spec.steps"),
        (
            "steps and a source",
            json!({"steps": [step(json!({}))], "source": {"configMap": {"name": "x", "key": "y"}}}),
            "not both",
        ),
        (
            "an S3 source that is not s3://",
            json!({"source": {"s3": {"uri": "https://bucket/key"}}}),
            "spec.source.s3.uri",
        ),
        (
            "success.containers a number",
            json!({"steps": [step(json!({"success": {"containers": 42}}))]}),
            "success.containers",
        ),
        (
            "1001 steps",
            json!({"steps": vec![step(json!({})); 1001]}),
            "spec.steps",
        ),
    ];
    cases
        .into_iter()
        .map(|(label, spec, place)| (label.to_owned(), spec, vec![place.to_owned()]))
        .collect()
}

/// Creates every malformed Sequence (raw JSON, so nothing on the client side checks it), then
/// waits until each is refused: by the API server (its schema) or by the controller (condition
/// Failed), with the place named either way.
pub async fn apply_malformed_sequences(client: kube::Client) -> MalformedFigures {
    let mut figures = MalformedFigures::default();
    let mut specs: Vec<(String, Value, Vec<String>)> = malformed::cases(false)
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            let mut body = case.body;
            body["name"] = json!(format!("malformed-{i:03}"));
            (case.label, json!({"steps": [body]}), case.places)
        })
        .collect();
    specs.extend(hand_written());
    let collection = "/apis/sequencer.dev/v1alpha1/namespaces/default/sequences";
    let mut pending = Vec::new();
    for (i, (label, spec, places)) in specs.into_iter().enumerate() {
        figures.total += 1;
        let name = format!("malformed-{i:03}");
        let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                            "metadata": {"name": name}, "spec": spec});
        let request = http::Request::post(collection)
            .header("content-type", "application/json")
            .body(object.to_string().into_bytes())
            .expect("request");
        match client.request_text(request).await {
            Ok(_) => pending.push((name, label, places)),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                figures.by_api_server += 1;
                if places.iter().any(|p| status.message.contains(p)) {
                    figures.refused_with_place += 1;
                } else {
                    figures.failures.push(format!(
                        "{label}: the API server's refusal does not name {places:?}: {}",
                        status.message
                    ));
                }
            }
            Err(e) => figures
                .failures
                .push(format!("{label}: create failed: {e}")),
        }
    }
    let start = Instant::now();
    while !pending.is_empty() && start.elapsed() < Duration::from_secs(300) {
        let mut still = Vec::new();
        for (name, label, places) in pending {
            match failed_message(&client, &name).await {
                Some(message) => {
                    figures.by_controller += 1;
                    if places.iter().any(|p| message.contains(p)) {
                        figures.refused_with_place += 1;
                    } else {
                        figures.failures.push(format!(
                            "{label}: the refusal does not name {places:?}: {message}"
                        ));
                    }
                }
                None => still.push((name, label, places)),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (name, label, _) in pending {
        figures
            .failures
            .push(format!("{label} ({name}): never refused"));
    }
    figures
}

/// The message of the Sequence's Failed condition, once True. Only the status is decoded (the
/// spec may be nested past any decoder's limit).
async fn failed_message(client: &kube::Client, name: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct StatusOnly {
        status: Option<Value>,
    }
    let path = format!("/apis/sequencer.dev/v1alpha1/namespaces/default/sequences/{name}");
    let text = client
        .request_text(http::Request::get(path).body(Vec::new()).ok()?)
        .await
        .ok()?;
    let status = serde_json::from_str::<StatusOnly>(&text).ok()?.status?;
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Failed" && c["status"] == "True")
        .and_then(|c| c["message"].as_str().map(str::to_owned))
}

/// Runs `sequencer run` on every generated malformed batch file and on every hand-written one in
/// tests/fixtures/invalid: each must exit 2 naming file:line and the key at fault.
pub fn run_malformed_batches(
    program: &OsString,
    envs: &[(OsString, OsString)],
) -> MalformedFigures {
    let mut figures = MalformedFigures::default();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |file: &Path, verb: &str| {
        std::process::Command::new(program)
            .arg(verb)
            .arg(file)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run sequencer")
    };
    // The generator's own control: its unchanged template is a valid batch.
    let control = dir.path().join("control.yml");
    std::fs::write(
        &control,
        malformed::batch_file("control", &malformed::template_snake()),
    )
    .expect("write");
    let out = run(&control, "validate");
    if !out.status.success() {
        figures.failures.push(format!(
            "the unchanged template is refused, so the cases prove nothing: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut files: Vec<(std::path::PathBuf, String, Vec<String>)> = Vec::new();
    for (i, case) in malformed::cases(true).into_iter().enumerate() {
        let path = dir.path().join(format!("malformed-{i:03}.yml"));
        std::fs::write(
            &path,
            malformed::batch_file(&format!("malformed-{i:03}"), &case.body),
        )
        .expect("write");
        files.push((path, case.label, case.places));
    }
    let fixtures = super::support::repo_root().join("tests/fixtures/invalid");
    for entry in std::fs::read_dir(fixtures).expect("fixtures").flatten() {
        let label = format!("fixture {}", entry.file_name().to_string_lossy());
        files.push((entry.path(), label, vec![String::new()]));
    }
    for (path, label, places) in files {
        figures.total += 1;
        let out = run(&path, "run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let located = stderr.lines().any(|line| {
            line.split_once(&format!("{file}:"))
                .is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit()))
        });
        if out.status.code() == Some(2) && located && places.iter().any(|p| stderr.contains(p)) {
            figures.refused_with_place += 1;
        } else {
            figures.failures.push(format!(
                "{label}: exit {:?}, expected 2 naming {file}:<line> and one of {places:?}: {stderr}",
                out.status.code()
            ));
        }
    }
    figures
}

pub struct Logs {
    pub panics: usize,
    pub panic_lines: Vec<String>,
    pub conflicts: usize,
}

/// What every controller's log shows: panics and status writes that conflicted.
pub fn scan_logs(dir: &Path) -> Logs {
    let mut logs = Logs {
        panics: 0,
        panic_lines: Vec::new(),
        conflicts: 0,
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if line.contains("panicked at") {
                logs.panics += 1;
                logs.panic_lines.push(line.to_owned());
            }
            if line.contains("status write conflicted") {
                logs.conflicts += 1;
            }
        }
    }
    logs
}
