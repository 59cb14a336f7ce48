//! The Helm chart and deploy/, through the real Helm library (helm-python-sdk) and a real
//! kube-apiserver: strict lint, values schema, every rendered manifest accepted by the API server
//! (server-side dry run) with default and non-default values, deploy/ equal to the chart's output,
//! and the controller completing a Sequence with nothing but that ServiceAccount's RBAC.

mod support;

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};
use support::chart::*;
use support::repo_root;
use support::world::*;

/// Creates `object` on the API server, for real or as a server-side dry run.
async fn create(client: &kube::Client, object: &Value, dry_run: bool) -> Result<(), String> {
    let api_version = object["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let (resource, capabilities) = pinned_kind(client, &gvk)
        .await
        .map_err(|e| format!("{api_version} {}: {e}", object["kind"]))?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let params = PostParams {
        dry_run,
        ..Default::default()
    };
    let object: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    match api.create(&params, &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 && !dry_run => Ok(()),
        Err(e) => Err(format!(
            "{} {}: {e}",
            gvk.kind,
            object.metadata.name.unwrap_or_default()
        )),
    }
}

async fn ensure_namespace(client: &kube::Client, name: &str) {
    create(
        client,
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        false,
    )
    .await
    .unwrap();
}

#[test]
fn the_chart_lints_strictly_and_ships_the_generated_crd() {
    let lint = helm(&["lint", &chart_path()], &json!({}));
    assert_eq!(lint["errors"], json!([]), "{lint}");
    // Helm's severities: 1 info, 2 warning, 3 error; strict fails on warnings.
    let serious: Vec<&Value> = lint["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
        .collect();
    assert!(serious.is_empty(), "{serious:?}");
    for (crd, copies) in [
        (
            "crds/sequences.sequencer.dev.yaml",
            [
                "charts/sequencer/crds/sequences.sequencer.dev.yaml",
                "deploy/crd.yaml",
            ],
        ),
        (
            "crds/scheduledsequences.sequencer.dev.yaml",
            [
                "charts/sequencer/crds/scheduledsequences.sequencer.dev.yaml",
                "deploy/scheduled-crd.yaml",
            ],
        ),
        (
            "crds/sequencepolicies.sequencer.dev.yaml",
            [
                "charts/sequencer/crds/sequencepolicies.sequencer.dev.yaml",
                "deploy/policy-crd.yaml",
            ],
        ),
    ] {
        let generated = std::fs::read_to_string(repo_root().join(crd)).unwrap();
        for copy in copies {
            assert_eq!(
                std::fs::read_to_string(repo_root().join(copy)).unwrap(),
                generated,
                "{copy} differs from crds/: copy {crd} there"
            );
        }
    }
}

#[test]
fn deploy_is_the_charts_output_for_its_default_values() {
    let dir = tempfile::tempdir().unwrap();
    helm(
        &["deploy", &chart_path(), dir.path().to_str().unwrap()],
        &json!({}),
    );
    let deploy = repo_root().join("deploy");
    let mut generated: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let want = std::fs::read_to_string(dir.path().join(&name)).unwrap();
        let have = std::fs::read_to_string(deploy.join(&name)).unwrap_or_default();
        assert_eq!(
            have, want,
            "deploy/{name} is stale: run tests/chart/helm.py deploy charts/sequencer deploy"
        );
        generated.push(name);
    }
    // The kustomization lists exactly the CRD, the namespace and the chart's objects.
    let kustomization: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let mut listed: Vec<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    generated.extend([
        "crd.yaml".to_owned(),
        "scheduled-crd.yaml".to_owned(),
        "policy-crd.yaml".to_owned(),
        "namespace.yaml".to_owned(),
    ]);
    generated.sort();
    assert_eq!(listed, generated);
}

#[test]
fn the_values_schema_and_the_chart_refuse_what_cannot_work() {
    let error = render(json!({"replicaCount": 0})).unwrap_err();
    assert!(error.contains("replicaCount"), "{error}");
    let error = render(json!({"controller": {"pollIntervalSeconds": 0}})).unwrap_err();
    assert!(error.contains("pollIntervalSeconds"), "{error}");
    let error = render(json!({"controller": {"logFormat": "xml"}})).unwrap_err();
    assert!(error.contains("logFormat"), "{error}");
    let error = render(json!({"controller": {"watchNamspace": "typo"}})).unwrap_err();
    assert!(error.contains("watchNamspace"), "{error}");
    let error = render(json!({"sharding": {"shards": ["Team_A"]}})).unwrap_err();
    assert!(error.contains("shards"), "{error}");
    let error = render(json!({"sharding": {"shards": ["a", "a"]}})).unwrap_err();
    assert!(error.contains("shards"), "{error}");
    let error = render(json!({"taskEvents": {"queueUrl": "ecs-events"}})).unwrap_err();
    assert!(error.contains("queueUrl"), "{error}");
    let error = render(json!({"tenancy": {"unselectedNamespaces": "warn"}})).unwrap_err();
    assert!(error.contains("unselectedNamespaces"), "{error}");
    let error = render(json!({"replicaCount": 2})).unwrap_err();
    assert!(
        error.contains("replicaCount > 1 needs leaderElection.enabled: true"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rendered_manifest_is_accepted_by_the_api_server() {
    let world = World::start().await;
    let client = world.client.clone();
    ensure_namespace(&client, "sequencer-system").await;
    ensure_namespace(&client, "team-a").await;
    // The Prometheus Operator's CRD is not in a bare API server: a stand-in with its group,
    // version and kind (it accepts any spec) lets the ServiceMonitor be dry-run.
    create(
        &client,
        &json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
                "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                         "names": {"plural": "servicemonitors", "singular": "servicemonitor", "kind": "ServiceMonitor", "listKind": "ServiceMonitorList"},
                         "versions": [{"name": "v1", "served": true, "storage": true,
                                       "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}),
        false,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let defaults = render(json!({})).unwrap();
    let deployment = find(&defaults, "Deployment", "sequencer-controller");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    assert!(
        !defaults.iter().any(|o| o["kind"] == "PodDisruptionBudget"
            || o["kind"] == "ServiceMonitor"
            || o["metadata"]["name"] == "sequencer-controller-leader-election"),
        "no PDB, ServiceMonitor or Lease RBAC by default"
    );
    let rules = &find(&defaults, "ClusterRole", "sequencer-controller")["rules"];
    assert!(
        !rules.to_string().contains("secrets"),
        "no access to Secrets: {rules}"
    );
    let with_git = render(json!({"gitCredentials": {"enabled": true}})).unwrap();
    let rules = &find(&with_git, "ClusterRole", "sequencer-controller")["rules"];
    let secrets: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resources"] == json!(["secrets"]))
        .collect();
    assert_eq!(secrets.len(), 1, "{rules}");
    assert_eq!(secrets[0]["verbs"], json!(["get"]), "read only, never list");
    // The root filesystem stays read-only; git fetches get a bounded scratch directory.
    let scratch = &pod["volumes"][0];
    assert_eq!(scratch["emptyDir"]["sizeLimit"], "512Mi");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/tmp");

    let custom = render(json!({
        "replicaCount": 2,
        "image": {"repository": "registry.example/sequencer", "tag": "1.2.3"},
        "imagePullSecrets": [{"name": "pull"}],
        "controller": {"watchNamespace": "team-a", "region": "eu-west-1", "logFormat": "plain", "logLevel": "sequencer=debug", "pollIntervalSeconds": 30},
        "leaderElection": {"enabled": true},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/sequencer"}},
        "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
        "serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "podAnnotations": {"example.com/team": "data"},
        "sharding": {"shards": ["a", "b"]},
        "taskEvents": {"queueUrl": "https://sqs.eu-west-1.amazonaws.com/123456789012/default-events",
                       "shardQueueUrls": {"a": "https://sqs.eu-west-1.amazonaws.com/123456789012/a-events"},
                       "pollIntervalSeconds": 90}
    }))
    .unwrap();
    let args = &find(&custom, "Deployment", "sequencer-controller")["spec"]["template"]["spec"]["containers"]
        [0]["args"];
    for wanted in [
        "--namespace=team-a",
        "--region=eu-west-1",
        "--leader-election",
        "--log-format=plain",
        "--poll-interval=30",
    ] {
        assert!(
            args.as_array().unwrap().iter().any(|a| a == wanted),
            "{wanted} missing from {args}"
        );
    }
    assert_eq!(
        find(&custom, "Role", "sequencer-controller")["metadata"]["namespace"],
        "team-a"
    );
    // Watching one namespace, the controller's only cluster-wide rights read SequencePolicies and
    // Namespaces (cluster-scoped: which policies govern the namespace).
    let cluster_roles: Vec<&Value> = custom
        .iter()
        .filter(|o| o["kind"] == "ClusterRole")
        .collect();
    let names: Vec<&str> = cluster_roles
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "sequencer-controller-tenancy",
            "sequencer-edit",
            "sequencer-view"
        ]
    );
    let tenancy = &cluster_roles[0]["rules"];
    for rule in tenancy.as_array().unwrap() {
        assert_eq!(rule["verbs"], json!(["get", "list", "watch"]), "{tenancy}");
    }
    // Tenants' roles never reach SequencePolicies.
    for role in &cluster_roles[1..] {
        assert!(
            !role["rules"].to_string().contains("sequencepolicies"),
            "{role}"
        );
    }
    let no_tenant_roles =
        render(json!({"tenancy": {"tenantRoles": false, "unselectedNamespaces": "deny"}})).unwrap();
    assert!(
        !no_tenant_roles
            .iter()
            .any(|o| o["metadata"]["name"] == "sequencer-edit"),
        "tenantRoles: false"
    );
    let deny_args = &find(&no_tenant_roles, "Deployment", "sequencer-controller")["spec"]["template"]
        ["spec"]["containers"][0]["args"];
    assert!(
        deny_args
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--unselected-namespaces=deny"),
        "{deny_args}"
    );
    let lease_rules = &find(&custom, "Role", "sequencer-controller-leader-election")["rules"][0];
    assert_eq!(lease_rules["resources"], json!(["leases"]));
    assert_eq!(
        find(&custom, "ServiceAccount", "sequencer-controller")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/sequencer"
    );
    find(&custom, "PodDisruptionBudget", "sequencer-controller");
    find(&custom, "ServiceMonitor", "sequencer");

    // Sharded: one Deployment (and PDB) per shard, with pod selectors that never overlap, each
    // told its shard and every named shard; the metrics Service selects them all.
    // Each with its own queue of task events, or none (shard b: it polls only).
    let shards = [
        ("sequencer-controller", None, Some("default-events")),
        (
            "sequencer-controller-a",
            Some("--shard=a"),
            Some("a-events"),
        ),
        ("sequencer-controller-b", Some("--shard=b"), None),
    ];
    let mut selectors = Vec::new();
    for (name, flag, queue) in shards {
        let deployment = find(&custom, "Deployment", name);
        let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
        let has = |wanted: &str| args.as_array().unwrap().iter().any(|a| a == wanted);
        assert!(has("--shards=a,b"), "{name}: {args}");
        let queue_flag = queue.map(|q| {
            format!("--task-events-queue-url=https://sqs.eu-west-1.amazonaws.com/123456789012/{q}")
        });
        let queues: Vec<&Value> = args
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a.as_str().unwrap_or_default().starts_with("--task-events"))
            .collect();
        match &queue_flag {
            Some(flag) => assert!(
                has(flag) && has("--task-events-poll-interval=90") && queues.len() == 2,
                "{name}: {args}"
            ),
            None => assert!(queues.is_empty(), "{name}: {args}"),
        }
        assert_eq!(flag.is_some_and(has), flag.is_some(), "{name}: {args}");
        assert_eq!(
            args.as_array()
                .unwrap()
                .iter()
                .filter(|a| a.as_str().unwrap_or_default().starts_with("--shard="))
                .count(),
            usize::from(flag.is_some()),
            "{name}: {args}"
        );
        let selector = deployment["spec"]["selector"]["matchLabels"].clone();
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        let service = &find(&custom, "Service", "sequencer-metrics")["spec"]["selector"];
        for (key, value) in service.as_object().unwrap() {
            assert_eq!(
                &pod_labels[key], value,
                "the metrics Service selects {name}'s pods"
            );
        }
        find(&custom, "PodDisruptionBudget", name);
        selectors.push((name, selector));
    }
    let deployments: Vec<&Value> = custom
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 3);
    for (name, selector) in &selectors {
        for other in &deployments {
            if other["metadata"]["name"] == *name {
                continue;
            }
            let labels = &other["spec"]["template"]["metadata"]["labels"];
            let matches = selector
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &labels[k] == v);
            assert!(
                !matches,
                "{name}'s selector also selects {}'s pods",
                other["metadata"]["name"]
            );
        }
    }

    // The binary accepts the flags the chart gives it: it gets as far as looking for Kubernetes.
    for (objects, name) in [
        (&defaults, "sequencer-controller"),
        (&custom, "sequencer-controller"),
        (&custom, "sequencer-controller-a"),
        (&custom, "sequencer-controller-b"),
    ] {
        let container =
            &find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let out = world
            .emu
            .sequencer()
            .args(&args)
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot reach Kubernetes"), "{stderr}");
    }

    for (label, objects) in [("default values", &defaults), ("custom values", &custom)] {
        for object in objects {
            let mut object = object.clone();
            // The v1.20 test server serves PodDisruptionBudget as policy/v1beta1 only (with the
            // same minAvailable and selector); on such clusters the template picks that version
            // itself from .Capabilities, which an offline render cannot see.
            if object["apiVersion"] == "policy/v1" {
                object["apiVersion"] = json!("policy/v1beta1");
            }
            create(&client, &object, true)
                .await
                .unwrap_or_else(|e| panic!("{label}: the API server refused {e}"));
        }
    }
}

/// A kubeconfig for the ServiceAccount: the test server's address and CA, the account's token.
async fn service_account_kubeconfig(world: &World, dir: &Path) -> std::path::PathBuf {
    let accounts: Api<ServiceAccount> = Api::namespaced(world.client.clone(), "sequencer-system");
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"audiences": [], "expirationSeconds": 3600}});
    let answer: Value = accounts
        .create_subresource(
            "token",
            "sequencer-controller",
            &PostParams::default(),
            &request,
        )
        .await
        .expect("a token for the ServiceAccount");
    let token = answer["status"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let admin: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&world.server.kubeconfig).unwrap())
            .unwrap();
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "sequencer-controller", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sequencer-controller"}}],
        "current-context": "sa"
    });
    let path = dir.join("service-account.kubeconfig");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_runs_a_sequence_with_only_the_deploy_rbac() {
    let world = World::start().await;
    let client = world.client.clone();
    // kubectl apply -k deploy/: every file the kustomization lists, in its order.
    let kustomization: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    for file in kustomization["resources"].as_array().unwrap() {
        let text = std::fs::read_to_string(repo_root().join("deploy").join(file.as_str().unwrap()))
            .unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for doc in docs.iter().filter(|d| !d.is_null()) {
            create(&client, doc, false)
                .await
                .unwrap_or_else(|e| panic!("deploy/{file}: {e}"));
        }
    }
    // With leader election the chart adds a Role on Leases; apply that too, from the chart.
    let leader = render(json!({"leaderElection": {"enabled": true}})).unwrap();
    for name in ["sequencer-controller-leader-election"] {
        create(&client, find(&leader, "Role", name), false)
            .await
            .unwrap();
        create(&client, find(&leader, "RoleBinding", name), false)
            .await
            .unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(&world, dir.path()).await;
    let (controller, log) = world.controller_as(
        &kubeconfig,
        &["--leader-election", "--lease-namespace", "sequencer-system"],
    );

    // A ConfigMap source, so that reading ConfigMaps is exercised too.
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let batch = "- one:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'quick:1', launch_type: FARGATE}\n- two:\n    type: ecs_task\n    parameters: {cluster: etl, task_definition: 'quick:1', launch_type: FARGATE}\n";
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "nightly"}, "data": {"batch.yml": batch}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let sequence = json!({"apiVersion": "sequencer.dev/v1alpha1", "kind": "Sequence", "metadata": {"name": "rbac"},
                          "spec": {"source": {"configMap": {"name": "nightly", "key": "batch.yml"}}, "pollIntervalSeconds": 1}});
    world
        .sequences()
        .create(
            &PostParams::default(),
            &serde_json::from_value(sequence).unwrap(),
        )
        .await
        .unwrap();
    world
        .wait_condition("rbac", "Complete", Duration::from_secs(90))
        .await;
    world.wait_events(&["Completed"]).await;
    let forbidden: Vec<Value> = log_lines(&log)
        .into_iter()
        .filter(|l| l.to_string().contains("forbidden"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "the RBAC refused something: {forbidden:?}"
    );
    assert!(
        log_lines(&log)
            .iter()
            .any(|l| l["message"] == "became the leader"),
        "the Lease RBAC is enough"
    );
    stop(controller);
}
