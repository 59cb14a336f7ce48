//! Batch files in git, through the real binary, against `git daemon` (git://) and git's smart
//! HTTP behind Basic authentication, both on 127.0.0.1: branch, tag and commit refs; the commit
//! pinned and a later push ignored by a started run; credentials from a Secret; every failure
//! naming the place; a SequencePolicy's git URL prefixes judged before anything is fetched.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use sequencer::api::sequence::Sequence;
use serde_json::{Value, json};
use support::git::GitServer;
use support::world::*;
use support::*;

fn batch_of(family: &str, steps: &[&str]) -> String {
    steps
        .iter()
        .map(|name| {
            format!(
                "- {name}:\n    type: ecs_task\n    parameters: {{cluster: etl, task_definition: '{family}:1', launch_type: FARGATE}}\n"
            )
        })
        .collect()
}

#[test]
fn the_cli_reads_a_batch_at_a_branch_a_tag_or_a_commit_and_names_the_place_of_every_failure() {
    let emu = Emulator::start();
    let server = GitServer::start(None);
    let repo = server.repo("batches");
    let first = repo.commit("nightly/etl.yml", &batch_of("first", &["load"]));
    repo.tag("v1");
    repo.commit("nightly/etl.yml", &batch_of("second", &["load"]));
    repo.branch("release");
    repo.commit("nightly/etl.yml", &batch_of("third", &["load"]));
    let url = format!("{}/batches.git", server.git_base);
    for (reference, family) in [
        (None, "second"),
        (Some("main"), "second"),
        (Some("v1"), "first"),
        (Some("release"), "third"),
        (Some(first.as_str()), "first"),
    ] {
        let query = reference.map(|r| format!("?ref={r}")).unwrap_or_default();
        let source = format!("git+{url}//nightly/etl.yml{query}");
        let dry = run(emu.sequencer().args(["run", "--dry-run", &source]));
        assert_eq!(dry.code, 0, "{source}: {dry:?}");
        let requests: Value = serde_json::from_str(&dry.stdout).expect("JSON");
        assert_eq!(
            requests[0]["runTask"]["taskDefinition"],
            format!("{family}:1"),
            "{source}"
        );
    }
    // Over http too.
    let source = format!(
        "git+{}/batches.git//nightly/etl.yml?ref=v1",
        server.http_base
    );
    let dry = run(emu.sequencer().args(["run", "--dry-run", &source]));
    assert_eq!(dry.code, 0, "{dry:?}");

    let bad_file = repo.commit(
        "broken.yml",
        "- load:\n    type: ecs_task\n    parameters: {task_definitio: 'x:1'}\n",
    );
    for (source, code, says) in [
        (
            format!("git+{url}//nightly/etl.yml?ref=nope"),
            3,
            "batches.git//nightly/etl.yml@nope: The remote didn't have any ref that matched 'nope'"
                .to_owned(),
        ),
        (
            format!("git+{url}//missing.yml"),
            3,
            "no file missing.yml at commit".to_owned(),
        ),
        (
            format!("git+{url}//nightly/etl.yml?ref={}", "0".repeat(40)),
            3,
            format!("commit {} is not on any branch or tag", "0".repeat(40)),
        ),
        (
            "git+git://127.0.0.1:1/batches.git//nightly/etl.yml".to_owned(),
            3,
            "git://127.0.0.1:1/batches.git//nightly/etl.yml".to_owned(),
        ),
        (
            format!("git+{url}//broken.yml?ref=release"),
            2,
            format!("(commit {bad_file})"),
        ),
        (
            "git+ssh://git@127.0.0.1/batches.git//x.yml".to_owned(),
            3,
            "ssh is not supported".to_owned(),
        ),
        (
            "git+https://127.0.0.1/batches.git".to_owned(),
            2,
            "no path in the repository".to_owned(),
        ),
    ] {
        let out = run(emu.sequencer().args(["run", "--dry-run", &source]));
        assert_eq!(out.code, code, "{source}: {out:?}");
        assert!(out.stderr.contains(&says), "{source}: {}", out.stderr);
    }
    // The broken file's error has the line and column of the key, in the file at that commit.
    let out = run(emu
        .sequencer()
        .args(["validate", &format!("git+{url}//broken.yml?ref=release")]));
    assert!(
        out.stderr.contains("broken.yml@release (commit"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(":3:"), "{}", out.stderr);
    assert!(emu.calls().is_empty(), "nothing was launched");
}

async fn create_in(world: &World, namespace: &str, name: &str, source: Value) {
    let api: Api<Sequence> = Api::namespaced(world.client.clone(), namespace);
    let object = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                        "metadata": {"name": name},
                        "spec": {"source": {"git": source}, "pollIntervalSeconds": 1}});
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sequence_runs_the_batch_at_the_commit_it_started_from() {
    let world = World::start().await;
    let server = GitServer::start(Some(("robot", "s3cret")));
    let repo = server.repo("batches");
    let v1 = repo.commit("nightly/etl.yml", &batch_of("quick", &["load"]));
    repo.tag("v1");
    let main_text = format!(
        "{}{}",
        batch_of("slow", &["extract"]),
        batch_of("quick", &["load"])
    );
    let main = repo.commit("nightly/etl.yml", &main_text);
    // The https server's certificate is signed by the test's CA.
    let trust = [("SSL_CERT_FILE", server.ca_file.as_path())];
    let (controller, _log) = world.controller_with_env(&[], &trust);
    let git_url = format!("{}/batches.git", server.git_base);

    // A branch: the commit it pointed at is pinned, and a push after the start changes nothing.
    create_in(
        &world,
        "default",
        "branch",
        json!({"url": git_url, "ref": "main", "path": "nightly/etl.yml"}),
    )
    .await;
    let (running, _, _) = world
        .wait_condition_in("default", "branch", "Running")
        .await;
    let pinned = running
        .status
        .as_ref()
        .and_then(|s| s.pinned.clone())
        .unwrap();
    assert_eq!(pinned.git_commit.as_deref(), Some(main.as_str()));
    assert_eq!(
        pinned.source_digest,
        Some(sequencer::api::sequence::text_digest(&main_text)),
        "the digest of the file as read at that commit"
    );
    assert!(
        pinned.source.contains("batches.git//nightly/etl.yml@main"),
        "{}",
        pinned.source
    );
    repo.commit("nightly/etl.yml", &batch_of("bad", &["extract", "load"]));
    world
        .emu
        .wait_for(Duration::from_secs(30), "the slow task", |emu| {
            emu.calls_of("RunTask")
                .iter()
                .any(|c| c["request"]["taskDefinition"] == "slow:1")
                .then_some(())
        });
    let arns = world.emu.task_arns("etl").await;
    world
        .emu
        .finish_task(&arns[0], Some(0), "EssentialContainerExited", "done");
    let (done, _, _) = world
        .wait_condition_in("default", "branch", "Complete")
        .await;
    let launched: Vec<String> = world
        .emu
        .calls_of("RunTask")
        .iter()
        .map(|c| {
            c["request"]["taskDefinition"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        launched,
        ["slow:1", "quick:1"],
        "the pinned plan ran, not the pushed one"
    );
    assert_eq!(
        done.status.unwrap().pinned.unwrap().git_commit.as_deref(),
        Some(main.as_str())
    );

    // A tag and a commit.
    create_in(
        &world,
        "default",
        "tag",
        json!({"url": git_url, "ref": "v1", "path": "nightly/etl.yml"}),
    )
    .await;
    create_in(
        &world,
        "default",
        "commit",
        json!({"url": git_url, "ref": v1, "path": "/nightly/etl.yml"}),
    )
    .await;
    for name in ["tag", "commit"] {
        let (seq, _, _) = world.wait_condition_in("default", name, "Complete").await;
        assert_eq!(
            seq.status.unwrap().pinned.unwrap().git_commit.as_deref(),
            Some(v1.as_str()),
            "{name}"
        );
    }

    // Over https behind Basic authentication: with the Secret's credentials it runs; without,
    // or with a key ssh would need, it fails as a source error saying why.
    let secrets: Api<Secret> = Api::namespaced(world.client.clone(), "default");
    for (name, data) in [
        (
            "robot",
            json!({"username": "cm9ib3Q=", "password": "czNjcmV0"}),
        ),
        (
            "wrong",
            json!({"username": "cm9ib3Q=", "password": "bm9wZQ=="}),
        ),
        ("ssh", json!({"identity": "a2V5"})),
    ] {
        let secret = json!({"metadata": {"name": name}, "type": "Opaque", "data": data});
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(secret).unwrap(),
            )
            .await
            .unwrap();
    }
    let http_url = format!("{}/batches.git", server.http_base);
    assert!(http_url.starts_with("https://"), "{http_url}");
    let source = |secret: Option<&str>| {
        let mut s = json!({"url": http_url, "ref": "v1", "path": "nightly/etl.yml"});
        if let Some(secret) = secret {
            s["secretRef"] = json!({"name": secret});
        }
        s
    };
    create_in(&world, "default", "private", source(Some("robot"))).await;
    let (seq, _, _) = world
        .wait_condition_in("default", "private", "Complete")
        .await;
    assert_eq!(
        seq.status.unwrap().pinned.unwrap().git_commit.as_deref(),
        Some(v1.as_str())
    );
    for (name, secret, says) in [
        (
            "anonymous",
            None,
            "the server asks for credentials: name a Secret",
        ),
        (
            "wrong-password",
            Some("wrong"),
            "were not accepted by the remote",
        ),
        ("ssh-key", Some("ssh"), "ssh is not supported"),
        (
            "no-secret",
            Some("absent"),
            "Secret default/absent does not exist",
        ),
    ] {
        create_in(&world, "default", name, source(secret)).await;
        let (_, reason, message) = world.wait_condition_in("default", name, "Failed").await;
        assert_eq!(reason, "SourceError", "{name}: {message}");
        assert!(message.contains(says), "{name}: {message}");
        assert!(
            !message.contains("s3cret") && !message.contains("nope"),
            "{name}: a password in {message}"
        );
    }

    // A policy's git URL prefixes are judged before anything is fetched.
    support::apiserver::install_crd(&world.client, &sequencer::api::sequence_policy::crd()).await;
    let namespaces: Api<Namespace> = Api::all(world.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-g"}})).unwrap(),
        )
        .await
        .unwrap();
    let policies: Api<sequencer::api::sequence_policy::SequencePolicy> =
        Api::all(world.client.clone());
    let policy = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "SequencePolicy", "metadata": {"name": "team-g"},
                        "spec": {"namespaces": {"names": ["team-g"]}, "allowed": {"gitUrlPrefixes": ["https://git.example.com/team-g/"]}}});
    policies
        .create(
            &PostParams::default(),
            &serde_json::from_value(policy).unwrap(),
        )
        .await
        .unwrap();
    stop(controller);
    let (controller, _log) = world.controller_with_env(&[], &trust);
    create_in(
        &world,
        "team-g",
        "elsewhere",
        json!({"url": git_url, "path": "nightly/etl.yml"}),
    )
    .await;
    let (_, reason, message) = world
        .wait_condition_in("team-g", "elsewhere", "Failed")
        .await;
    assert_eq!(reason, "PolicyDenied", "{message}");
    assert!(message.contains("source.git url"), "{message}");
    stop(controller);
}
