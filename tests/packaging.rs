//! What ships beside the binary: the Dockerfile's shape (read as text, a quick first check; the
//! image itself is built and run by tests/image.rs), and the PrometheusRule example, whose
//! expressions must name metrics the controller really exports.

mod support;

use serde_json::Value;
use support::repo_root;

#[test]
fn the_dockerfile_is_multi_stage_non_root_and_runs_the_batch_without_arguments() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let instructions: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (word, rest) = l.split_once(' ')?;
            word.chars()
                .all(|c| c.is_ascii_uppercase())
                .then(|| (word.to_owned(), rest.trim().to_owned()))
        })
        .collect();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (w, _))| w == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let runtime = &instructions[*stages.last().unwrap()..];
    let user = runtime
        .iter()
        .find(|(w, _)| w == "USER")
        .map(|(_, r)| r.clone())
        .expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric uid");
    assert!(uid >= 1000, "non-root: {user}");
    assert_eq!(
        runtime
            .iter()
            .rfind(|(w, _)| w == "ENTRYPOINT")
            .map(|(_, r)| r.as_str()),
        Some(r#"["/usr/local/bin/sequencer"]"#),
        "exec form, no fixed arguments"
    );
    assert!(
        !runtime.iter().any(|(w, _)| w == "CMD"),
        "no CMD: without arguments the image runs the batch SEQUENCER_YAML_S3_PATH names"
    );
    for (word, rest) in &instructions {
        if word == "RUN" && rest.contains("cargo build") {
            assert!(
                rest.contains("--locked") && rest.contains("--release"),
                "{rest}"
            );
        }
        if word == "COPY" && !rest.starts_with("--from") {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for source in &parts[..parts.len() - 1] {
                assert!(
                    repo_root().join(source).exists(),
                    "COPY {source}: no such path"
                );
            }
        }
    }
    // The build context leaves out what the image does not need.
    let ignore = std::fs::read_to_string(repo_root().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

#[test]
fn the_prometheus_rules_name_metrics_the_controller_exports() {
    // A family with labels is exported once it has a sample: give each one.
    let metrics = sequencer::controller::runtime::metrics::Metrics::new();
    let throttled: Result<(), sequencer_core::observation::ApiError> =
        Err(sequencer_core::observation::ApiError {
            transient: true,
            code: "ThrottlingException".into(),
            message: "Rate exceeded".into(),
        });
    metrics.ecs_call("DescribeTasks", &throttled);
    metrics.step_ended("failed", Some(std::time::Duration::from_secs(1)));
    metrics
        .runs_finished
        .get_or_create(&sequencer::controller::runtime::metrics::PhaseLabel {
            phase: "Failed".into(),
        })
        .inc();
    metrics
        .reconcile_errors
        .get_or_create(&sequencer::controller::runtime::metrics::KindLabel {
            kind: "kube".into(),
        })
        .inc();
    let exported: Vec<String> = metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some(if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_owned()
            })
        })
        .collect();
    let rule: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/monitoring/prometheusrule.yaml"))
            .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let names: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("sequencer_"))
                .collect();
            assert!(!names.is_empty(), "{expr}");
            for name in names {
                assert!(
                    exported.iter().any(|e| e == name),
                    "{name} is not exported (exported: {exported:?})"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 4);
}
