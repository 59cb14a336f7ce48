//! The controller on a real kube-apiserver + etcd, with the AWS emulator: Sequences run to
//! Complete or Failed, deletion stops tasks, and a controller killed mid-run resumes from `.status`.

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sequencer::sequence::Sequence;
use serde_json::{Value, json};
use support::apiserver::KubeServer;
use support::*;

struct World {
    emu: Emulator,
    server: KubeServer,
    client: ::kube::Client,
    logs: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
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
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        crds.patch(
            "sequences.sequencer.dev",
            &PatchParams::apply("test").force(),
            &Patch::Apply(&sequencer::sequence::crd()),
        )
        .await
        .expect("CRD");
        for _ in 0..100 {
            let crd = crds.get("sequences.sequencer.dev").await.unwrap();
            if crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        World {
            emu,
            server,
            client,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    fn controller(&self) -> Child {
        let log = std::fs::File::create(self.logs.path().join(format!(
            "controller-{}.log",
            Instant::now().elapsed().as_nanos()
        )))
        .unwrap();
        self.emu
            .sequencer()
            .args(["controller", "--http-address", "127.0.0.1:0"])
            .env("KUBECONFIG", &self.server.kubeconfig)
            .env("RUST_LOG", "sequencer=debug,warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the controller")
    }

    fn sequences(&self) -> Api<Sequence> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn create(&self, name: &str, steps: Value) {
        let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": name},
                            "spec": {"steps": steps, "pollIntervalSeconds": 1}});
        self.sequences()
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .expect("create");
    }

    /// Waits until condition `type_` of `name` is True; returns the Sequence.
    async fn wait_condition(&self, name: &str, type_: &str, limit: Duration) -> Sequence {
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

/// The condition of `type_`, which the controller always writes.
fn condition_of(
    status: &sequencer::sequence::SequenceStatus,
    type_: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let found = status.conditions.iter().find(|c| c.type_ == type_);
    found
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

fn step(name: &str, family: &str) -> Value {
    json!({"name": name, "type": "ecs_task", "parameters": {"cluster": "etl", "taskDefinition": format!("{family}:1"), "launchType": "FARGATE"}})
}

fn stop(mut child: Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn sequences_complete_or_fail_and_deletion_stops_the_running_task() {
    let world = World::start().await;
    let controller = world.controller();

    // Bad input: refused with the place named, nothing launched, and the others still served.
    let mut too_many_tags = step("tagged", "quick");
    too_many_tags["parameters"]["tags"] = Value::Array(
        (0..48)
            .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
            .collect(),
    );
    world
        .create("invalid", json!([step("fine", "quick"), too_many_tags]))
        .await;
    let refused = world
        .wait_condition("invalid", "Failed", Duration::from_secs(60))
        .await;
    let condition = condition_of(refused.status.as_ref().unwrap(), "Failed");
    assert_eq!(condition.reason, "InvalidSpec");
    assert!(
        condition.message.contains("spec.steps[1].parameters.tags (tagged): 48 tags given; ECS allows 50 per task and sequencer adds 3, so at most 47"),
        "{condition:?}"
    );
    assert!(
        world.emu.calls_of("RunTask").is_empty(),
        "nothing was launched for an invalid Sequence"
    );

    // A Sequence the controller cannot even decode (the API server keeps `success.containers` as
    // written) is refused on its own; it does not stall the watch of the others (below).
    let resource = ::kube::core::ApiResource::erase::<Sequence>(&());
    let raw: Api<::kube::core::DynamicObject> =
        Api::namespaced_with(world.client.clone(), "default", &resource);
    let mut odd = step("odd", "quick");
    odd["success"] = json!({"containers": 5});
    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": "undecodable"}, "spec": {"steps": [odd]}});
    raw.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .expect("the API server accepts it");
    let start = Instant::now();
    loop {
        let object = raw.get("undecodable").await.unwrap();
        let failed = object
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Failed").cloned());
        if let Some(c) = failed.filter(|c| c["status"] == "True") {
            assert_eq!(c["reason"], "InvalidSpec");
            assert!(
                c["message"]
                    .as_str()
                    .unwrap()
                    .contains("the Sequence cannot be read"),
                "{c}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the undecodable Sequence was never refused: {:?}",
            object.data.get("status")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    world
        .create(
            "nightly",
            json!([
                step("extract", "quick"),
                step("transform", "quick"),
                step("load", "quick")
            ]),
        )
        .await;
    let done = world
        .wait_condition("nightly", "Complete", Duration::from_secs(90))
        .await;
    let status = done.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    let run = status.run.clone().unwrap();
    for s in run["steps"].as_array().unwrap() {
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(s["attempts"][0]["tasks"][0]["containers"][0]["exitCode"], 0);
    }
    assert_eq!(
        status.plan.as_ref().and_then(Value::as_array).map(Vec::len),
        Some(3),
        "the plan is pinned in .status"
    );
    let failed = condition_of(&status, "Failed");
    assert_eq!(failed.status, "False");
    assert_eq!(world.emu.calls_of("RunTask").len(), 3);
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(world.client.clone(), "default");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    for wanted in ["StepStarted", "StepSucceeded", "Completed", "InvalidSpec"] {
        assert!(
            reasons.iter().any(|r| r == wanted),
            "no {wanted} event in {reasons:?}"
        );
    }

    world
        .create(
            "broken",
            json!([
                step("one", "quick"),
                step("two", "bad"),
                step("three", "quick")
            ]),
        )
        .await;
    let failed = world
        .wait_condition("broken", "Failed", Duration::from_secs(90))
        .await;
    let status = failed.status.unwrap();
    let condition = condition_of(&status, "Failed");
    assert_eq!(condition.reason, "EssentialContainerExited");
    assert!(
        condition.message.contains("container app exited with 3"),
        "{condition:?}"
    );
    let run = status.run.unwrap();
    assert_eq!(
        run["steps"][2]["phase"], "Pending",
        "step three never launched"
    );
    assert_eq!(world.emu.calls_of("RunTask").len(), 5);

    world
        .create(
            "doomed",
            json!([step("forever", "slow"), step("never", "quick")]),
        )
        .await;
    world
        .wait_condition("doomed", "Running", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    world
        .sequences()
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while world.sequences().get_opt("doomed").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the Sequence was never released by its finalizer"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stops = world.emu.calls_of("StopTask");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["request"]["reason"], "sequencer: run cancelled");
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        6,
        "the second step of the deleted Sequence never started"
    );
    stop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_mid_run_resumes_from_status_without_launching_twice() {
    let world = World::start().await;
    let steps: Vec<Value> = (1..=4).map(|i| step(&format!("s{i}"), "steady")).collect();
    world.create("resumable", Value::Array(steps)).await;
    let mut kills = 0;
    let start = Instant::now();
    loop {
        let mut controller = world.controller();
        let seq = world.sequences().get("resumable").await.unwrap();
        if seq.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True")
        }) {
            stop(controller);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "never completed after {kills} kills"
        );
        let delay = Duration::from_millis(700 + (kills * 577) % 1900);
        std::thread::sleep(delay);
        if kills < 8 {
            controller.kill().unwrap();
            let _ = controller.wait();
            kills += 1;
        } else {
            world
                .wait_condition("resumable", "Complete", Duration::from_secs(90))
                .await;
            stop(controller);
            break;
        }
    }
    assert!(kills >= 5, "killed {kills} times");
    let mut tokens: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for call in world.emu.calls_of("RunTask") {
        tokens
            .entry(call["startedBy"].as_str().unwrap().to_owned())
            .or_default()
            .push(call["clientToken"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 4, "{tokens:?}");
    assert!(
        tokens.values().all(|t| t.iter().all(|x| x == &t[0])),
        "{tokens:?}"
    );
    assert_eq!(
        world.emu.task_arns("etl").await.len(),
        4,
        "exactly one task per step"
    );
    println!(
        "controller test: {kills} SIGKILLs, 4 steps, {} RunTask calls",
        world.emu.calls_of("RunTask").len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn suspend_holds_the_run_and_the_run_deadline_stops_it() {
    let world = World::start().await;
    let controller = world.controller();

    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": "held"},
                        "spec": {"suspend": true, "pollIntervalSeconds": 1, "steps": [step("one", "quick"), step("two", "quick")]}});
    world
        .sequences()
        .create(
            &PostParams::default(),
            &serde_json::from_value(object).unwrap(),
        )
        .await
        .unwrap();
    world
        .wait_condition("held", "Suspended", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        world.emu.calls_of("RunTask").is_empty(),
        "a suspended Sequence launches nothing"
    );
    world
        .sequences()
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    let done = world
        .wait_condition("held", "Complete", Duration::from_secs(60))
        .await;
    let suspended = condition_of(done.status.as_ref().unwrap(), "Suspended");
    assert_eq!(suspended.status, "False");
    assert_eq!(world.emu.calls_of("RunTask").len(), 2);

    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": "late"},
                        "spec": {"activeDeadlineSeconds": 2, "pollIntervalSeconds": 1, "steps": [step("forever", "slow"), step("never", "quick")]}});
    world
        .sequences()
        .create(
            &PostParams::default(),
            &serde_json::from_value(object).unwrap(),
        )
        .await
        .unwrap();
    let failed = world
        .wait_condition("late", "Failed", Duration::from_secs(60))
        .await;
    let condition = condition_of(failed.status.as_ref().unwrap(), "Failed");
    assert_eq!(condition.reason, "DeadlineExceeded");
    let stops = world.emu.calls_of("StopTask");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        stops[0]["request"]["reason"],
        "sequencer: run deadline exceeded"
    );
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        3,
        "the step after the deadline never started"
    );

    // Sources: a seed-format batch file in a ConfigMap or in S3.
    let batch = "- one:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'quick:1', launch_type: FARGATE}\n\
- two:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'quick:1', launch_type: FARGATE}\n";
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(world.client.clone(), "default");
    for (name, text) in [
        ("batch", batch.to_owned()),
        (
            "broken",
            "- a:\n    type: shell\n    parameters: {task_definition: x}\n".to_owned(),
        ),
    ] {
        let map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"nightly.yml": text}});
        maps.create(
            &PostParams::default(),
            &serde_json::from_value(map).unwrap(),
        )
        .await
        .unwrap();
    }
    let s3 = world.emu.s3().await;
    s3.create_bucket().bucket("batches").send().await.unwrap();
    s3.put_object()
        .bucket("batches")
        .key("nightly.yml")
        .body(batch.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let with_source = |name: &str, source: Value| {
        serde_json::from_value::<Sequence>(json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": name},
                                                  "spec": {"pollIntervalSeconds": 1, "source": source}})).unwrap()
    };
    for (name, source) in [
        (
            "from-configmap",
            json!({"configMap": {"name": "batch", "key": "nightly.yml"}}),
        ),
        (
            "from-s3",
            json!({"s3": {"uri": "s3://batches/nightly.yml"}}),
        ),
        (
            "missing-map",
            json!({"configMap": {"name": "nope", "key": "nightly.yml"}}),
        ),
        (
            "broken-batch",
            json!({"configMap": {"name": "broken", "key": "nightly.yml"}}),
        ),
    ] {
        world
            .sequences()
            .create(&PostParams::default(), &with_source(name, source))
            .await
            .unwrap();
    }
    for name in ["from-configmap", "from-s3"] {
        let done = world
            .wait_condition(name, "Complete", Duration::from_secs(60))
            .await;
        assert_eq!(
            done.status
                .unwrap()
                .plan
                .as_ref()
                .and_then(Value::as_array)
                .map(Vec::len),
            Some(2),
            "{name}: plan pinned"
        );
    }
    let missing = world
        .wait_condition("missing-map", "Failed", Duration::from_secs(60))
        .await;
    let c = condition_of(missing.status.as_ref().unwrap(), "Failed");
    assert_eq!(c.reason, "SourceError");
    assert!(
        c.message
            .contains("configmap default/nope key nightly.yml: the ConfigMap does not exist"),
        "{c:?}"
    );
    let broken = world
        .wait_condition("broken-batch", "Failed", Duration::from_secs(60))
        .await;
    let c = condition_of(broken.status.as_ref().unwrap(), "Failed");
    assert_eq!(c.reason, "InvalidSpec");
    assert!(c.message.contains("configmap default/broken key nightly.yml:2:11: step 1 (a): type: `shell` is not allowed here"), "{c:?}");
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        7,
        "two steps each from the ConfigMap and S3, nothing for the refused ones"
    );
    stop(controller);
}
