//! SequencePolicies through the real binary, a real API server and the emulator: what a policy
//! does not allow is refused before anything launches, whatever the source (inline, ConfigMap,
//! S3); a started run is held when a narrowed policy forbids its next launch; a policy change or a
//! namespace relabelled judges again at once; a namespace no policy selects is denied when the
//! controller says so; and a tenant bound to the chart's role cannot touch a SequencePolicy.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use sequencer::api::sequence::Sequence;
use sequencer::api::sequence_policy::SequencePolicy;
use serde_json::{Value, json};
use support::repo_root;
use support::world::*;

const POLICY: &str = "team-a";

async fn install_policy_crd(world: &World) {
    support::apiserver::install_crd(&world.client, &sequencer::api::sequence_policy::crd()).await;
}

async fn label_namespace(world: &World, name: &str, labels: Value) {
    let namespaces: Api<Namespace> = Api::all(world.client.clone());
    if namespaces.get_opt(name).await.unwrap().is_none() {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let patch = json!({"metadata": {"labels": labels}});
    namespaces
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

async fn put_policy(world: &World, allowed: Value) {
    let policies: Api<SequencePolicy> = Api::all(world.client.clone());
    let policy = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "SequencePolicy",
                        "metadata": {"name": POLICY},
                        "spec": {"namespaces": {"selector": {"matchLabels": {"tenant": "a"}}},
                                 "allowed": allowed}});
    let params = PatchParams::apply("tenancy-test").force();
    policies
        .patch(POLICY, &params, &Patch::Apply(&policy))
        .await
        .unwrap();
}

fn sequence(name: &str, spec: Value) -> Sequence {
    let mut spec = spec;
    spec["pollIntervalSeconds"] = json!(1);
    serde_json::from_value(
        json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence",
                                  "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

fn step_on(name: &str, cluster: &str, family: &str, extra: Value) -> Value {
    let mut parameters = json!({"cluster": cluster, "taskDefinition": format!("{family}:1"),
                                "launchType": "FARGATE"});
    if let (Some(p), Some(e)) = (parameters.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({"name": name, "type": "ecs_task", "parameters": parameters})
}

/// Writes `text` to s3://team-a-batches/`key` (the bucket made first).
async fn put_team_a_batch(world: &World, key: &str, text: &str) {
    let s3 = world.emu.s3().await;
    // Made by the first call; the emulator answers a second create as already owned by you.
    let _ = s3.create_bucket().bucket("team-a-batches").send().await;
    s3.put_object()
        .bucket("team-a-batches")
        .key(key)
        .body(text.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
}

/// The reason and message of condition `type_` of `namespace/name` once it is True.
async fn wait_true(world: &World, namespace: &str, name: &str, type_: &str) -> (String, String) {
    let (_, reason, message) = world.wait_condition_in(namespace, name, type_).await;
    (reason, message)
}

fn launches_of(world: &World, family: &str) -> usize {
    world
        .emu
        .calls_of("RunTask")
        .iter()
        .filter(|c| c["request"]["taskDefinition"] == format!("{family}:1"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_refuses_what_it_does_not_allow_from_any_source_and_holds_a_started_run() {
    let world = World::start().await;
    install_policy_crd(&world).await;
    label_namespace(&world, "default", json!({"tenant": "a"})).await;
    put_policy(
        &world,
        json!({"clusters": ["etl"], "taskDefinitions": ["quick", "slow"], "taskRoleArns": [],
               "sourceBuckets": ["team-a-batches"], "maxCount": 2}),
    )
    .await;
    let bad_batch = "- load:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'bad:1', launch_type: FARGATE}\n";
    put_team_a_batch(&world, "batch.yml", bad_batch).await;
    let maps: Api<ConfigMap> = Api::namespaced(world.client.clone(), "default");
    let map = json!({"metadata": {"name": "nightly"}, "data": {"batch.yml": bad_batch}});
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(map).unwrap(),
    )
    .await
    .unwrap();
    let (controller, _log) = world.controller_with(&[]);

    let role = json!({"overrides": {"taskRoleArn": "arn:aws:iam::123456789012:role/admin"}});
    let cases = [
        (
            "allowed",
            json!({"steps": [step_on("one", "etl", "quick", json!({}))]}),
            None,
        ),
        (
            "cluster",
            json!({"steps": [step_on("one", "etl", "quick", json!({})), step_on("two", "prod", "quick", json!({}))]}),
            Some(
                r#"step 2 (two): cluster "prod" is not allowed by SequencePolicy team-a: one of "etl""#,
            ),
        ),
        (
            "family",
            json!({"steps": [step_on("one", "etl", "bad", json!({}))]}),
            Some(r#"step 1 (one): taskDefinition "bad:1" is not allowed"#),
        ),
        (
            "role",
            json!({"steps": [step_on("one", "etl", "quick", role)]}),
            Some(
                r#"overrides.taskRoleArn "arn:aws:iam::123456789012:role/admin" is not allowed by SequencePolicy team-a: none is allowed"#,
            ),
        ),
        (
            "count",
            json!({"steps": [step_on("one", "etl", "quick", json!({"count": 3}))]}),
            Some(r#"step 1 (one): count "3" is not allowed by SequencePolicy team-a: at most 2"#),
        ),
        (
            "configmap",
            json!({"source": {"configMap": {"name": "nightly", "key": "batch.yml"}}}),
            Some(r#"step 1 (load): taskDefinition "bad:1" is not allowed"#),
        ),
        (
            "s3-step",
            json!({"source": {"s3": {"uri": "s3://team-a-batches/batch.yml"}}}),
            Some(r#"step 1 (load): taskDefinition "bad:1" is not allowed"#),
        ),
        (
            // Refused before it is read: the bucket does not even exist (reading it would be a
            // SourceError).
            "s3-bucket",
            json!({"source": {"s3": {"uri": "s3://someone-elses/batch.yml"}}}),
            Some(
                r#"source.s3 bucket "someone-elses" is not allowed by SequencePolicy team-a: one of "team-a-batches""#,
            ),
        ),
    ];
    for (name, spec, _) in &cases {
        world
            .sequences()
            .create(&PostParams::default(), &sequence(name, spec.clone()))
            .await
            .unwrap();
    }
    for (name, _, denial) in &cases {
        match denial {
            None => {
                wait_true(&world, "default", name, "Complete").await;
            }
            Some(expected) => {
                let (reason, message) = wait_true(&world, "default", name, "Failed").await;
                assert_eq!(reason, "PolicyDenied", "{name}: {message}");
                assert!(message.contains(expected), "{name}: {message}");
            }
        }
    }
    let notes = world
        .wait_event_notes("PolicyDenied", cases.len() - 1)
        .await;
    assert!(
        notes.iter().any(|n| n.contains(r#"cluster "prod""#)),
        "{notes:?}"
    );
    // Nothing of a refused Sequence was launched: not even the allowed first step of `cluster`.
    assert_eq!(world.emu.calls_of("RunTask").len(), 1);
    assert_eq!(launches_of(&world, "quick"), 1);

    // The policy widened: the Sequence it refused is judged again at once (its spec never
    // changed and an inline Sequence is not retried by itself) and runs.
    put_policy(
        &world,
        json!({"clusters": ["etl"], "taskDefinitions": ["quick", "slow"], "taskRoleArns": [],
               "sourceBuckets": ["team-a-batches"], "maxCount": 3}),
    )
    .await;
    wait_true(&world, "default", "count", "Complete").await;
    assert_eq!(
        launches_of(&world, "quick"),
        2,
        "one RunTask more, for 3 tasks"
    );
    let last = world.emu.calls_of("RunTask").pop().unwrap();
    assert_eq!(last["request"]["count"], 3);

    // A started run whose next step a narrowed policy forbids is held, not failed: its status is
    // kept, nothing more is launched, and it goes on once the policy allows it again.
    world
        .sequences()
        .create(
            &PostParams::default(),
            &sequence(
                "held",
                json!({"steps": [step_on("first", "etl", "slow", json!({})), step_on("second", "etl", "quick", json!({}))]}),
            ),
        )
        .await
        .unwrap();
    wait_true(&world, "default", "held", "Running").await;
    let slow_task = slow_task_of(&world).await;
    put_policy(
        &world,
        json!({"clusters": ["etl"], "taskDefinitions": ["slow"], "taskRoleArns": [],
               "sourceBuckets": ["team-a-batches"], "maxCount": 3}),
    )
    .await;
    // The watch has the narrowed policy before the first step ends.
    tokio::time::sleep(Duration::from_secs(2)).await;
    world
        .emu
        .finish_task(&slow_task, Some(0), "EssentialContainerExited", "done");
    let (reason, message) = wait_true(&world, "default", "held", "Held").await;
    assert_eq!(reason, "PolicyDenied");
    assert!(
        message.contains(r#"step 2 (second): taskDefinition "quick:1" is not allowed"#),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        launches_of(&world, "quick"),
        2,
        "the held run launched nothing"
    );
    let held = world.sequences().get("held").await.unwrap();
    let run = held.status.as_ref().and_then(|s| s.run.as_ref()).unwrap();
    assert_eq!(run.to_value()["steps"][0]["phase"], "Succeeded", "{run:?}");
    world
        .wait_event_notes("PolicyDenied", cases.len())
        .await
        .iter()
        .find(|n| n.contains("the run is held"))
        .expect("a Warning Event says the run is held");

    put_policy(
        &world,
        json!({"clusters": ["etl"], "taskDefinitions": ["slow", "quick"], "taskRoleArns": [],
               "sourceBuckets": ["team-a-batches"], "maxCount": 3}),
    )
    .await;
    let done = world
        .wait_condition("held", "Complete", Duration::from_secs(60))
        .await;
    let conditions = &done.status.unwrap().conditions;
    assert!(
        !conditions.iter().any(|c| c.type_ == "Held"),
        "the hold is lifted: {conditions:?}"
    );
    assert_eq!(launches_of(&world, "quick"), 3);
    assert_eq!(launches_of(&world, "slow"), 1);
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        4,
        "nothing refused was launched"
    );
    stop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unselected_namespace_is_denied_until_a_policy_selects_it_and_tenants_cannot_touch_policies()
 {
    let world = World::start().await;
    install_policy_crd(&world).await;
    put_policy(&world, json!({"clusters": ["etl"]})).await;
    label_namespace(&world, "team-b", json!({"team": "b"})).await;
    let (controller, _log) = world.controller_with(&["--unselected-namespaces", "deny"]);

    let team_b: Api<Sequence> = Api::namespaced(world.client.clone(), "team-b");
    let steps = json!({"steps": [step_on("one", "etl", "quick", json!({}))]});
    team_b
        .create(&PostParams::default(), &sequence("nightly", steps.clone()))
        .await
        .unwrap();
    let (reason, message) = wait_true(&world, "team-b", "nightly", "Failed").await;
    assert_eq!(reason, "PolicyDenied");
    assert!(
        message.contains("namespace team-b is not selected by any SequencePolicy"),
        "{message}"
    );
    assert!(world.emu.calls_of("RunTask").is_empty());

    // The admin labels the namespace into the policy: judged again at once, and it runs.
    label_namespace(&world, "team-b", json!({"tenant": "a"})).await;
    wait_true(&world, "team-b", "nightly", "Complete").await;
    assert_eq!(world.emu.calls_of("RunTask").len(), 1);
    stop(controller);

    // A tenant bound to the chart's edit role in its namespace runs Sequences there and cannot
    // create, change or even list SequencePolicies.
    let chart_roles = std::fs::read_to_string(repo_root().join("deploy/tenant-rbac.yaml")).unwrap();
    let roles: Vec<Value> = serde_saphyr::from_multiple(&chart_roles).unwrap();
    for role in roles.iter().filter(|r| !r.is_null()) {
        let api: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(world.client.clone());
        api.create(
            &PostParams::default(),
            &serde_json::from_value(role.clone()).unwrap(),
        )
        .await
        .unwrap();
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(world.client.clone(), "team-b");
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "tenant"}})).unwrap(),
        )
        .await
        .unwrap();
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(world.client.clone(), "team-b");
    let binding = json!({"metadata": {"name": "tenant-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "sequencer-edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": "team-b"}]});
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(binding).unwrap(),
        )
        .await
        .unwrap();
    let tenant = tenant_client(&world, &accounts).await;
    let own: Api<Sequence> = Api::namespaced(tenant.clone(), "team-b");
    own.create(&PostParams::default(), &sequence("mine", steps))
        .await
        .expect("the tenant may create Sequences in its namespace");
    let policies: Api<SequencePolicy> = Api::all(tenant);
    let forbidden = |result: Result<(), kube::Error>, what: &str| match result {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{what}: {status:?}"),
        other => panic!("{what}: not forbidden: {other:?}"),
    };
    let mine = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "SequencePolicy",
                      "metadata": {"name": "mine"}, "spec": {"namespaces": {"names": ["team-b"]}}});
    forbidden(
        policies
            .create(
                &PostParams::default(),
                &serde_json::from_value(mine).unwrap(),
            )
            .await
            .map(drop),
        "create",
    );
    let widen = json!({"spec": {"allowed": {"clusters": null}}});
    forbidden(
        policies
            .patch(POLICY, &PatchParams::default(), &Patch::Merge(&widen))
            .await
            .map(drop),
        "patch",
    );
    forbidden(
        policies.delete(POLICY, &Default::default()).await.map(drop),
        "delete",
    );
    forbidden(policies.list(&Default::default()).await.map(drop), "list");
}

/// The task of the first step of `held`, once it is recorded.
async fn slow_task_of(world: &World) -> String {
    let start = Instant::now();
    loop {
        let seq = world.sequences().get("held").await.unwrap();
        let run = seq.status.and_then(|s| s.run).map(|r| r.to_value());
        let arn = run.as_ref().and_then(|r| {
            r["steps"][0]["attempts"][0]["tasks"][0]["taskArn"]
                .as_str()
                .map(str::to_owned)
        });
        if let Some(arn) = arn {
            return arn;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no task: {run:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client acting as ServiceAccount team-b/tenant (a token from the TokenRequest API).
async fn tenant_client(world: &World, accounts: &Api<ServiceAccount>) -> kube::Client {
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"audiences": [], "expirationSeconds": 3600}});
    let answer: Value = accounts
        .create_subresource("token", "tenant", &PostParams::default(), &request)
        .await
        .unwrap();
    let token = answer["status"]["token"].as_str().unwrap().to_owned();
    let admin: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&world.server.kubeconfig).unwrap())
            .unwrap();
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "tenant", "user": {"token": token}}],
        "contexts": [{"name": "tenant", "context": {"cluster": "test", "user": "tenant"}}],
        "current-context": "tenant"
    });
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(config).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

const ROLE: &str = "arn:aws:iam::123456789012:role/team-a-batch";

/// A policy giving namespace team-a the role [`ROLE`].
async fn give_team_a_its_role(world: &World) {
    install_policy_crd(world).await;
    label_namespace(world, "team-a", json!({})).await;
    let policies: Api<SequencePolicy> = Api::all(world.client.clone());
    let policy = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "SequencePolicy",
                        "metadata": {"name": "team-a"},
                        "spec": {"namespaces": {"names": ["team-a"]},
                                 "aws": {"roleArn": ROLE, "externalId": "team-a-ext"}}});
    policies
        .create(
            &PostParams::default(),
            &serde_json::from_value(policy).unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespaces_sequences_act_as_the_role_its_policy_names() {
    let world = World::start().await;
    give_team_a_its_role(&world).await;
    let (controller, _log) = world.controller_with(&[]);

    let team_a: Api<Sequence> = Api::namespaced(world.client.clone(), "team-a");
    let steps = |family: &str| json!({"steps": [step_on("one", "etl", family, json!({})), step_on("two", "etl", family, json!({}))]});
    // Inline steps; steps from S3; a step that fails, whose log lines are read.
    let batch = "- one: {type: ecs_task, parameters: {cluster: etl, task_definition: 'quick:1', launch_type: FARGATE}}\n\
                 - two: {type: ecs_task, parameters: {cluster: etl, task_definition: 'quick:1', launch_type: FARGATE}}\n";
    put_team_a_batch(&world, "weekly.yml", batch).await;
    let failing = [("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "1")];
    let broken_definition = world
        .emu
        .register("broken", &[("app", "awslogs")], &failing)
        .await;
    let specs = [
        ("nightly", steps("quick")),
        (
            "weekly",
            json!({"source": {"s3": {"uri": "s3://team-a-batches/weekly.yml"}}}),
        ),
        (
            "broken",
            json!({"steps": [step_on("one", "etl", "broken", json!({}))]}),
        ),
    ];
    for (name, spec) in specs {
        team_a
            .create(&PostParams::default(), &sequence(name, spec))
            .await
            .unwrap();
    }
    // A namespace no policy selects keeps the controller's own identity.
    world
        .sequences()
        .create(&PostParams::default(), &sequence("own", steps("steady")))
        .await
        .unwrap();
    wait_true(&world, "team-a", "nightly", "Complete").await;
    wait_true(&world, "team-a", "weekly", "Complete").await;
    let (_, broken_failure) = wait_true(&world, "team-a", "broken", "Failed").await;
    wait_true(&world, "default", "own", "Complete").await;

    // Each Sequence acts in a session of its own, named and tagged after its namespace and name;
    // the task watcher's DescribeTasks, shared by the namespace's Sequences, in the namespace's.
    // Each session is assumed once (its credentials are kept), with the controller's own key.
    let sts: Vec<Value> = world
        .emu
        .calls()
        .into_iter()
        .filter(|c| c["service"] == "sts")
        .collect();
    let mut key_of_session: HashMap<String, String> = HashMap::new();
    for call in &sts {
        assert_eq!(call["operation"], "AssumeRole", "{call}");
        assert_eq!(call["roleArn"], ROLE, "{call}");
        assert_eq!(call["externalId"], "team-a-ext", "{call}");
        assert_eq!(
            call["accessKey"], "emulator",
            "assumed with the controller's own key"
        );
        let session = call["roleSessionName"].as_str().unwrap_or_default();
        let expected_tags = match session {
            "sequencer-team-a" => json!({"sequencer.dev/namespace": "team-a"}),
            "sequencer-team-a_nightly" | "sequencer-team-a_weekly" | "sequencer-team-a_broken" => {
                json!({
                    "sequencer.dev/namespace": "team-a",
                    "sequencer.dev/sequence": session.trim_start_matches("sequencer-team-a_"),
                })
            }
            other => panic!("unexpected session {other}: {call}"),
        };
        assert_eq!(call["tags"], expected_tags, "{call}");
        let key = call["assumedAccessKey"].as_str().unwrap_or_default();
        assert!(!key.is_empty() && key != "emulator", "{call}");
        let before = key_of_session.insert(session.to_owned(), key.to_owned());
        assert!(before.is_none(), "{session} was assumed twice: {sts:?}");
    }
    let sessions = ["nightly", "weekly", "broken"].map(|name| format!("sequencer-team-a_{name}"));
    for session in &sessions {
        assert!(key_of_session.contains_key(session), "{session}: {sts:?}");
    }
    let nightly = team_a.get("nightly").await.unwrap();
    let status = nightly.status.as_ref().unwrap();
    assert_eq!(
        status
            .pinned
            .as_ref()
            .and_then(|p| p.aws_role_arn.as_deref()),
        Some(ROLE)
    );
    // The session each of team-a's runs (by its run tag, the Sequence's uid) must sign in, and
    // the tasks they launched.
    let mut session_of_run: HashMap<String, &str> = HashMap::new();
    let mut team_a_tasks: Vec<String> = Vec::new();
    for name in ["nightly", "weekly", "broken"] {
        let seq = team_a.get(name).await.unwrap();
        let key = &key_of_session[&format!("sequencer-team-a_{name}")];
        session_of_run.insert(seq.metadata.uid.clone().unwrap(), key.as_str());
        let run = seq.status.unwrap().run.unwrap().to_value();
        for step in run["steps"].as_array().unwrap() {
            team_a_tasks.push(
                step["attempts"][0]["tasks"][0]["taskArn"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
    }
    assert_eq!(team_a_tasks.len(), 5);
    let key_of = |name: &str| key_of_session[&format!("sequencer-team-a_{name}")].as_str();
    let namespace_key = key_of_session.get("sequencer-team-a").map(String::as_str);
    let mut checked = (0, 0, 0, 0);
    for call in world.emu.calls().iter().filter(|c| c["service"].is_null()) {
        let request = call["request"].to_string();
        let family = call["request"]["taskDefinition"]
            .as_str()
            .unwrap_or_default();
        let key = call["accessKey"].as_str().unwrap_or_default();
        let run = call["request"]["tags"]
            .as_array()
            .and_then(|tags| tags.iter().find(|t| t["key"] == "sequencer.dev/run"))
            .and_then(|t| t["value"].as_str())
            .unwrap_or_default();
        if call["operation"] == "RunTask" && session_of_run.contains_key(run) {
            assert_eq!(
                Some(key),
                session_of_run.get(run).copied(),
                "a RunTask of team-a not signed in its Sequence's session: {call}"
            );
            checked.0 += 1;
        } else if family == broken_definition {
            assert_eq!(call["operation"], "DescribeTaskDefinition", "{call}");
            assert_eq!(key, key_of("broken"), "the log read's lookup: {call}");
            checked.3 += 1;
        } else if team_a_tasks.iter().any(|t| request.contains(t)) {
            assert!(
                session_of_run.values().any(|k| *k == key) || Some(key) == namespace_key,
                "team-a's call signed by {key}: {call}"
            );
            if call["operation"] == "DescribeTasks" {
                checked.1 += 1;
            }
        } else if family == "steady:1" {
            assert_eq!(key, "emulator", "{call}");
            checked.2 += 1;
        }
    }
    assert_eq!(checked.0, 5, "team-a's five RunTask calls");
    assert!(checked.3 >= 1, "the failed step's task definition was read");
    // The S3 object and the failed step's log stream were read in their Sequences' sessions.
    let calls = world.emu.calls();
    let reads_of = |service: &str, what: &dyn Fn(&Value) -> bool| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c["service"] == service && what(c))
            .map(|c| c["accessKey"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let object_reads = reads_of("s3", &|c| {
        c["operation"] == "GET" && c["path"] == "/team-a-batches/weekly.yml"
    });
    assert!(!object_reads.is_empty(), "weekly.yml was read");
    assert!(
        object_reads.iter().all(|k| k == key_of("weekly")),
        "{object_reads:?}"
    );
    let log_reads = reads_of("logs", &|c| c["operation"] == "GetLogEvents");
    assert!(
        !log_reads.is_empty(),
        "the failed step's log was read: {broken_failure}"
    );
    assert!(
        log_reads.iter().all(|k| k == key_of("broken")),
        "{log_reads:?}"
    );
    assert!(checked.1 >= 1, "team-a's tasks were described");
    assert_eq!(checked.2, 2, "the other Sequence's two RunTask calls");
    stop(controller);
}

/// A role that cannot be assumed at the moment of a launch (the trust policy refuses, STS is
/// down) is an answer-less launch: the step waits, is looked up, and is launched once the session
/// can be had — once, never twice, and never as the controller itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_assume_role_delays_a_launch_and_never_doubles_it() {
    let world = World::start().await;
    give_team_a_its_role(&world).await;
    // The first AssumeRole calls (the Sequence's session, for its first RunTask and the lookups
    // after it) are refused.
    world
        .emu
        .inject_error("AssumeRole", 3, 403, "AccessDenied", false);
    let (controller, log) = world.controller_with(&[]);
    let team_a: Api<Sequence> = Api::namespaced(world.client.clone(), "team-a");
    let steps = json!({"steps": [step_on("one", "etl", "quick", json!({})), step_on("two", "etl", "quick", json!({}))]});
    team_a
        .create(&PostParams::default(), &sequence("nightly", steps))
        .await
        .unwrap();
    wait_true(&world, "team-a", "nightly", "Complete").await;

    let calls = world.emu.calls();
    let refused: Vec<&Value> = calls
        .iter()
        .filter(|c| c["service"] == "sts" && c["injected"] == "AccessDenied")
        .collect();
    assert_eq!(refused.len(), 3, "{calls:?}");
    assert_eq!(refused[0]["roleSessionName"], "sequencer-team-a_nightly");
    let runs: Vec<&Value> = calls
        .iter()
        .filter(|c| c["service"].is_null() && c["operation"] == "RunTask")
        .collect();
    assert_eq!(runs.len(), 2, "one RunTask per step: {runs:?}");
    assert_ne!(runs[0]["startedBy"], runs[1]["startedBy"]);
    let as_itself: Vec<&Value> = calls
        .iter()
        .filter(|c| c["service"].is_null() && c["accessKey"] == "emulator")
        .filter(|c| {
            ["RunTask", "ListTasks", "DescribeTasks", "StopTask"]
                .contains(&c["operation"].as_str().unwrap_or_default())
        })
        .collect();
    assert!(
        as_itself.is_empty(),
        "team-a's calls made as the controller itself: {as_itself:?}"
    );
    let written = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        written.contains("assuming arn:aws:iam::123456789012:role/team-a-batch as session sequencer-team-a_nightly"),
        "the refusal is in the controller's log"
    );
    stop(controller);
}

/// The identity a run acts as comes from the policies, never from its status, which a tenant
/// may write. A run whose status records no identity (started before identities were recorded,
/// or edited to drop to the controller's own) and one whose status names another team's role are
/// both held while team-a's policy names its own role: nothing is assumed, looked up or launched
/// for them.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_whose_status_names_another_identity_than_its_policy_is_held() {
    use kube::ResourceExt;
    use sequencer_core::observation::Observation;
    use sequencer_core::plan::Plan;
    use sequencer_core::status::RunStatus;

    let world = World::start().await;
    give_team_a_its_role(&world).await;
    let team_a: Api<Sequence> = Api::namespaced(world.client.clone(), "team-a");
    let other_role = "arn:aws:iam::210987654321:role/team-b-batch";
    let mut started_by = Vec::new();
    for (name, forged) in [("unpinned", false), ("forged", true)] {
        let spec = json!({"steps": [step_on("one", "etl", "quick", json!({}))]});
        let digest = sequencer::api::sequence::spec_digest(&sequence(name, spec.clone()).spec);
        let pinned = forged.then(|| {
            json!({"region": "us-east-1", "source": "spec.steps", "specDigest": digest,
                   "awsRoleArn": other_role})
        });
        let created = team_a
            .create(&PostParams::default(), &sequence(name, spec.clone()))
            .await
            .unwrap();
        // A run whose launch is recorded, as a status the tenant wrote.
        let steps = sequence(name, spec).spec.steps;
        let plan = Plan::new(steps.clone());
        let run = RunStatus::new(created.uid().unwrap_or_default(), &plan);
        let now = jiff::Timestamp::now();
        let run = sequencer_core::engine::advance(&plan, &run, &[Observation::Tick], now).status;
        started_by.push(run.steps[0].attempts[0].started_by.clone());
        let mut status = json!({"phase": "Running", "plan": steps, "run": run});
        if let Some(pinned) = pinned {
            status["pinned"] = pinned;
        }
        team_a
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
            .unwrap();
    }

    // A run that ended before the policy named a role is left as it ended.
    let spec = json!({"steps": [step_on("one", "etl", "quick", json!({}))]});
    let created = team_a
        .create(&PostParams::default(), &sequence("ended", spec.clone()))
        .await
        .unwrap();
    let steps = sequence("ended", spec).spec.steps;
    let mut ended = RunStatus::new(created.uid().unwrap_or_default(), &Plan::new(steps.clone()));
    ended.phase = sequencer_core::status::RunPhase::Succeeded;
    let status = json!({"status": {"phase": "Succeeded", "plan": steps, "run": ended}});
    team_a
        .patch_status("ended", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let (controller, _log) = world.controller_with(&[]);
    for name in ["unpinned", "forged"] {
        let (reason, message) = wait_true(&world, "team-a", name, "Held").await;
        assert_eq!(reason, "PolicyDenied", "{name}: {message}");
        assert!(message.contains(ROLE), "{name}: {message}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let calls = world.emu.calls();
    let assumed: Vec<&Value> = calls
        .iter()
        .filter(|c| c["service"] == "sts")
        .filter(|c| {
            c["roleArn"] == other_role
                || c["roleSessionName"]
                    .as_str()
                    .is_some_and(|s| s.contains("unpinned") || s.contains("forged"))
        })
        .collect();
    assert!(assumed.is_empty(), "assumed for a held run: {assumed:?}");
    let acted: Vec<&Value> = calls
        .iter()
        .filter(|c| {
            started_by
                .iter()
                .any(|s| c["startedBy"].as_str() == Some(s.as_str()))
        })
        .collect();
    assert!(acted.is_empty(), "ECS calls for a held run: {acted:?}");
    let ended = team_a.get("ended").await.unwrap();
    let held = ended
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == "Held" && c.status == "True");
    assert!(!held, "a finished run was held: {:?}", ended.status);
    stop(controller);
}

/// A Namespace and its Sequence applied together (as GitOps does), while the controller's watch
/// of namespaces lags: the policy selecting the namespace by label is not known to govern it
/// until the namespace is seen, so the controller waits for it instead of starting the run under
/// the open default as itself. The run's first call is signed by the policy's role.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_not_seen_yet_is_waited_for_not_taken_as_unselected() {
    let world = World::start().await;
    install_policy_crd(&world).await;
    let policies: Api<SequencePolicy> = Api::all(world.client.clone());
    let policy = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "SequencePolicy",
                        "metadata": {"name": "gitops-teams"},
                        "spec": {"namespaces": {"selector": {"matchLabels": {"tenant": "gitops"}}},
                                 "aws": {"roleArn": ROLE, "externalId": "team-a-ext"}}});
    policies
        .create(
            &PostParams::default(),
            &serde_json::from_value(policy).unwrap(),
        )
        .await
        .unwrap();
    let proxy = support::lagging_proxy::LaggingProxy::start_for(
        world.client.clone(),
        Duration::from_secs(10),
        Some("namespaces"),
    )
    .await;
    let (controller, _log) = world.controller_as(&proxy.kubeconfig, &[]);
    // The controller has listed everything and works (its watches now lag).
    world
        .sequences()
        .create(
            &PostParams::default(),
            &sequence(
                "first",
                json!({"steps": [step_on("one", "etl", "quick", json!({}))]}),
            ),
        )
        .await
        .unwrap();
    wait_true(&world, "default", "first", "Complete").await;
    // The namespace and its Sequence, applied together.
    label_namespace(&world, "fresh", json!({"tenant": "gitops"})).await;
    let fresh: Api<Sequence> = Api::namespaced(world.client.clone(), "fresh");
    let spec = json!({"steps": [step_on("one", "etl", "quick", json!({}))]});
    fresh
        .create(&PostParams::default(), &sequence("applied", spec))
        .await
        .unwrap();
    wait_true(&world, "fresh", "applied", "Complete").await;
    let run_tasks = world.emu.calls_of("RunTask");
    assert_eq!(run_tasks.len(), 2, "{run_tasks:?}");
    assert_ne!(
        run_tasks[1]["accessKey"], "emulator",
        "launched as the controller itself, not as the policy's role: {run_tasks:?}"
    );
    let pinned = fresh
        .get("applied")
        .await
        .unwrap()
        .status
        .and_then(|s| s.pinned)
        .and_then(|p| p.aws_role_arn);
    assert_eq!(pinned.as_deref(), Some(ROLE));
    stop(controller);
}
