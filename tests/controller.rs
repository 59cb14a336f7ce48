//! The controller on a real kube-apiserver + etcd, with the AWS emulator: Sequences run to
//! Complete or Failed, deletion stops tasks, bad input is refused, suspend and deadlines work.
//! Crashes, leader election, conflicts and operations: `controller_ops.rs`; ECS's own faults and
//! eventual consistency: `controller_faults.rs`.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use sequencer::api::sequence::Sequence;
use serde_json::{Value, json};
use support::world::*;

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
    assert_status_written_by_the_controller_only(
        &serde_json::to_value(raw.get("undecodable").await.unwrap()).unwrap(),
    );

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
    assert_status_written_by_the_controller_only(&serde_json::to_value(&done).unwrap());
    // Argo CD's view of the real object (deploy/argocd/health.lua).
    let (health, _) = support::argocd::health(&serde_json::to_value(&done).unwrap());
    assert_eq!(health, "Healthy");
    let status = done.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    assert_eq!(status.progress.as_deref(), Some("3/3"));
    let run = status.run.clone().unwrap().to_value();
    for s in run["steps"].as_array().unwrap() {
        assert_eq!(s["phase"], "Succeeded");
        assert_eq!(s["attempts"][0]["tasks"][0]["containers"][0]["exitCode"], 0);
    }
    assert_eq!(
        status
            .plan
            .as_ref()
            .map(|p| p.to_value())
            .as_ref()
            .and_then(Value::as_array)
            .map(Vec::len),
        Some(3),
        "the plan is pinned in .status"
    );
    let failed = condition_of(&status, "Failed");
    assert_eq!(failed.status, "False");
    assert_eq!(world.emu.calls_of("RunTask").len(), 3);
    world
        .wait_events(&["StepStarted", "StepSucceeded", "Completed", "InvalidSpec"])
        .await;
    // Each step has Events of its own (not a count on the first step's), as `kubectl describe`
    // shows them.
    let succeeded = world.wait_event_notes("StepSucceeded", 3).await;
    for label in ["step 1 (extract)", "step 2 (transform)", "step 3 (load)"] {
        assert!(
            succeeded.iter().any(|n| n.starts_with(label)),
            "no StepSucceeded Event for {label}: {succeeded:?}"
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
    let (health, message) = support::argocd::health(&serde_json::to_value(&failed).unwrap());
    assert_eq!(health, "Degraded");
    assert!(message.contains("container app exited with 3"), "{message}");
    let status = failed.status.unwrap();
    let condition = condition_of(&status, "Failed");
    assert_eq!(condition.reason, "EssentialContainerExited");
    assert!(
        condition.message.contains("container app exited with 3"),
        "{condition:?}"
    );
    let run = status.run.unwrap().to_value();
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
    let held = world
        .wait_condition("held", "Suspended", Duration::from_secs(60))
        .await;
    let (health, _) = support::argocd::health(&serde_json::to_value(&held).unwrap());
    assert_eq!(health, "Suspended");
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
    s3.put_bucket_versioning()
        .bucket("batches")
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let put = s3
        .put_object()
        .bucket("batches")
        .key("nightly.yml")
        .body(batch.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let version = put.version_id().expect("a versioned bucket").to_owned();
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
        // Where the plan came from is recorded with it: the S3 object's version and ETag too.
        let pinned = done.status.as_ref().unwrap().pinned.clone().unwrap();
        if name == "from-s3" {
            assert_eq!(pinned.source, "s3://batches/nightly.yml");
            assert_eq!(pinned.s3_version_id.as_deref(), Some(version.as_str()));
            assert!(pinned.s3_etag.is_some(), "{pinned:?}");
        } else {
            assert_eq!(pinned.source, "configmap default/batch key nightly.yml");
            assert_eq!(pinned.s3_version_id, None);
        }
        assert_eq!(
            done.status
                .unwrap()
                .plan
                .map(|p| p.to_value())
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

    // The missing ConfigMap appears: the source is read again without any edit of the Sequence.
    let late: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "nope"}, "data": {"nightly.yml": batch}}),
    )
    .unwrap();
    maps.create(&PostParams::default(), &late).await.unwrap();
    let recovered = world
        .wait_condition("missing-map", "Complete", Duration::from_secs(90))
        .await;
    let failed = condition_of(recovered.status.as_ref().unwrap(), "Failed");
    assert_eq!(failed.status, "False");
    assert_eq!(world.emu.calls_of("RunTask").len(), 9);
    stop(controller);
}

/// Every managed-fields entry that owns part of `.status` belongs to the controller's one field
/// manager.
fn assert_status_written_by_the_controller_only(object: &Value) {
    let entries = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let status_managers: Vec<&str> = entries
        .iter()
        .filter(|e| e["fieldsV1"].get("f:status").is_some())
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert!(!status_managers.is_empty(), "{entries:?}");
    assert!(
        status_managers.iter().all(|m| *m == "sequencer-controller"),
        "{status_managers:?}"
    );
}

/// Started against a cluster without the CRD, the controller says what is missing and how to
/// install it, and exits as a configuration error instead of watching a resource that is not there.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_crd_the_controller_names_it_and_how_to_install_it_then_exits() {
    let server = support::apiserver::KubeServer::start();
    let emu = support::Emulator::start();
    let mut child = emu
        .sequencer()
        .args(["controller", "--http-address", "127.0.0.1:0"])
        .env("KUBECONFIG", &server.kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the controller");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the controller kept running without its CRD");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("sequences.sequencer.dev") && stderr.contains("kubectl apply -f crds/"),
        "{stderr}"
    );
}

/// A status this controller cannot read (here an attempt phase from a newer version, beside a
/// field it does not know) is never overwritten and never restarted: the Sequence is held with a
/// `Held` condition and a Warning Event and nothing is launched. Once the status reads again, the
/// run goes on from it, each step launched once.
#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_status_is_held_never_overwritten_or_restarted() {
    let world = World::start().await;
    let controller = world.controller();
    world
        .create(
            "future",
            json!([step("one", "steady"), step("two", "quick")]),
        )
        .await;
    let api = world.sequences();
    // Wait until step one's task is recorded.
    let start = Instant::now();
    let run = loop {
        let seq = api.get("future").await.unwrap();
        let run = seq
            .status
            .and_then(|s| s.run)
            .map(|r| r.to_value())
            .unwrap_or_default();
        if run["steps"][0]["attempts"][0]["tasks"][0]["taskArn"].is_string() {
            break run;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut future = run.clone();
    future["steps"][0]["attempts"][0]["phase"] = json!("Adopting");
    future["aFieldFromTheFuture"] = json!({"kept": true});
    api.patch_status(
        "future",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"run": future}})),
    )
    .await
    .expect("write a status from a newer version");

    let held = world
        .wait_condition("future", "Held", Duration::from_secs(60))
        .await;
    let status = held.status.clone().unwrap();
    let condition = condition_of(&status, "Held");
    assert_eq!(condition.reason, "StatusUnreadable");
    assert!(
        condition.message.contains("status.run cannot be read")
            && condition.message.contains("Adopting"),
        "{condition:?}"
    );
    let kept = status.run.clone().unwrap().to_value();
    assert_eq!(
        kept["steps"][0]["attempts"][0]["phase"], "Adopting",
        "{kept}"
    );
    assert_eq!(kept["aFieldFromTheFuture"]["kept"], true, "{kept}");
    assert!(
        status.plan.is_some() && status.pinned.is_some(),
        "{status:?}"
    );
    world.wait_events(&["StatusUnreadable"]).await;
    // Held: step one's task finishes meanwhile, but nothing is decided or launched.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        1,
        "nothing launched while held"
    );
    let still = api.get("future").await.unwrap().status.unwrap();
    assert_eq!(
        still.run.unwrap().to_value()["steps"][0]["attempts"][0]["phase"],
        "Adopting"
    );

    // Repaired: the run goes on from the stored status.
    api.patch_status(
        "future",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"run": run}})),
    )
    .await
    .expect("repair the status");
    let done = world
        .wait_condition("future", "Complete", Duration::from_secs(90))
        .await;
    let conditions = done.status.unwrap().conditions;
    assert!(
        !conditions
            .iter()
            .any(|c| c.type_ == "Held" && c.status == "True"),
        "{conditions:?}"
    );
    let calls = world.emu.calls_of("RunTask");
    assert_eq!(calls.len(), 2, "each step launched once: {calls:?}");
    assert_ne!(calls[0]["clientToken"], calls[1]["clientToken"]);
    stop(controller);
}

/// A typo inside a nested object of an inline step is not pruned by the API server (the CRD keeps
/// unknown keys in steps, whatever the client): the controller refuses the step with the key path
/// and the closest known key. A bad value of a field with alternative forms names its place too.
/// Nothing is launched.
#[tokio::test(flavor = "multi_thread")]
async fn nested_typos_and_bad_alternatives_are_refused_with_the_place_and_a_suggestion() {
    let world = World::start().await;
    let controller = world.controller();
    let resource = ::kube::core::ApiResource::erase::<Sequence>(&());
    let raw: Api<::kube::core::DynamicObject> =
        Api::namespaced_with(world.client.clone(), "default", &resource);
    let mut typo = step("typo", "quick");
    typo["parameters"]["networkConfiguration"] =
        json!({"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroup": ["sg-1"]}});
    typo["retry"] = json!({"limit": 1, "backof": {"initialSeconds": 5}});
    let mut alternative = step("alternative", "quick");
    alternative["success"] = json!({"containers": 42});
    // Beside `name`, at the top of the step (where serde's flatten would have dropped it).
    let mut top = step("top", "quick");
    top["timeoutSecond"] = json!(60);
    for (name, body) in [("typo", typo), ("alternative", alternative), ("top", top)] {
        let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                            "metadata": {"name": name}, "spec": {"steps": [body]}});
        raw.create(
            &PostParams::default(),
            &serde_json::from_value(object).unwrap(),
        )
        .await
        .expect("the API server keeps it as written");
    }
    let stored = raw.get("typo").await.unwrap();
    assert_eq!(
        stored.data["spec"]["steps"][0]["parameters"]["networkConfiguration"]["awsvpcConfiguration"]
            ["securityGroup"][0],
        "sg-1",
        "the unknown key was kept, not pruned"
    );

    let refused = |name: &'static str| {
        let raw = raw.clone();
        async move {
            let start = Instant::now();
            loop {
                let object = raw.get(name).await.unwrap();
                let failed = object
                    .data
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter()
                            .find(|c| c["type"] == "Failed" && c["status"] == "True")
                            .cloned()
                    });
                if let Some(condition) = failed {
                    return condition;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "{name} was never refused"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let typo = refused("typo").await;
    assert_eq!(typo["reason"], "InvalidSpec");
    let message = typo["message"].as_str().unwrap();
    for wanted in [
        "spec.steps[0].parameters.networkConfiguration.awsvpcConfiguration.securityGroup (typo)",
        "did you mean `securityGroups`",
        "spec.steps[0].retry.backof (typo)",
        "did you mean `backoff`",
    ] {
        assert!(message.contains(wanted), "{wanted:?} not in {message}");
    }
    let alternative = refused("alternative").await;
    let message = alternative["message"].as_str().unwrap();
    assert!(
        message.contains("spec.steps[0].success.containers (alternative)"),
        "{message}"
    );
    let top = refused("top").await;
    let message = top["message"].as_str().unwrap();
    for wanted in [
        "spec.steps[0].timeoutSecond (top)",
        "did you mean `timeoutSeconds`",
    ] {
        assert!(message.contains(wanted), "{wanted:?} not in {message}");
    }
    assert!(world.emu.calls_of("RunTask").is_empty(), "nothing launched");
    stop(controller);
}

/// Deleting a Sequence whose run cannot be read does not orphan its tasks: they are found by the
/// startedBy values and run tag derived from the Sequence, stopped, and only then is the
/// finalizer removed.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_sequence_with_an_unreadable_run_stops_its_tasks_first() {
    let world = World::start().await;
    let controller = world.controller();
    world
        .create("orphan", json!([step("one", "slow"), step("two", "quick")]))
        .await;
    let api = world.sequences();
    let start = Instant::now();
    let (run, arn) = loop {
        let seq = api.get("orphan").await.unwrap();
        let run = seq
            .status
            .and_then(|s| s.run)
            .map(|r| r.to_value())
            .unwrap_or_default();
        if let Some(arn) = run["steps"][0]["attempts"][0]["tasks"][0]["taskArn"].as_str() {
            break (run.clone(), arn.to_owned());
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut unreadable = run;
    unreadable["steps"][0]["phase"] = json!("Paused");
    api.patch_status(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"run": unreadable}})),
    )
    .await
    .expect("make the run unreadable");
    world
        .wait_condition("orphan", "Held", Duration::from_secs(60))
        .await;

    api.delete("orphan", &DeleteParams::default())
        .await
        .expect("delete");
    let start = Instant::now();
    while api.get_opt("orphan").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the Sequence was never let go"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stops = world.emu.calls_of("StopTask");
    assert!(
        stops.iter().any(|c| c["request"]["task"] == arn.as_str()),
        "the running task was stopped before the finalizer went: {stops:?}"
    );
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        1,
        "step two never launched"
    );
    stop(controller);
}

/// A Sequence nested a thousand levels deep (past any decoder's recursion limit) is refused like
/// any other undecodable Sequence, and the valid Sequence beside it still runs: one bad object
/// never blinds the controller's watch.
#[tokio::test(flavor = "multi_thread")]
async fn a_pathologically_deep_sequence_is_refused_and_does_not_blind_the_watch() {
    let world = World::start().await;
    let mut deep = String::from("0");
    for _ in 0..1000 {
        deep = format!("{{\"a\":{deep}}}");
    }
    let body = format!(
        "{{\"apiVersion\":\"sequencer.dev/v1alpha1\",\"kind\":\"Sequence\",\"metadata\":{{\"name\":\"deep\"}},\
         \"spec\":{{\"steps\":[{{\"name\":\"load\",\"type\":\"ecs_task\",\"parameters\":{{\"cluster\":\"etl\",\"taskDefinition\":\"quick\"}},\"deep\":{deep}}}]}}}}"
    );
    let request = http::Request::post("/apis/sequencer.dev/v1alpha1/namespaces/default/sequences")
        .header("content-type", "application/json")
        .body(body.into_bytes())
        .unwrap();
    world
        .client
        .request_text(request)
        .await
        .expect("the API server stores it (spec.steps keeps unknown fields)");
    world.create("beside", json!([step("load", "quick")])).await;
    let controller = world.controller();
    world
        .wait_condition("beside", "Complete", Duration::from_secs(60))
        .await;

    // Read back without building a tree of the spec: only the status is decoded.
    #[derive(serde::Deserialize)]
    struct StatusOnly {
        status: Option<Value>,
    }
    let start = Instant::now();
    let failed = loop {
        let path = "/apis/sequencer.dev/v1alpha1/namespaces/default/sequences/deep";
        let text = world
            .client
            .request_text(http::Request::get(path).body(Vec::<u8>::new()).unwrap())
            .await
            .unwrap();
        let stored: StatusOnly = serde_json::from_str(&text).unwrap();
        let failed = stored.status.and_then(|s| {
            s["conditions"].as_array().and_then(|cs| {
                cs.iter()
                    .find(|c| c["type"] == "Failed" && c["status"] == "True")
                    .cloned()
            })
        });
        if let Some(condition) = failed {
            break condition;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the deep Sequence was never refused"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(failed["reason"], "InvalidSpec");
    let message = failed["message"].as_str().unwrap();
    assert!(
        message.contains("nested more than 128 levels deep"),
        "{message}"
    );
    let events = world.wait_events(&["InvalidSpec"]).await;
    assert_eq!(events.get("InvalidSpec"), Some(&1), "{events:?}");
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        1,
        "only the valid Sequence launched"
    );
    stop(controller);
}
