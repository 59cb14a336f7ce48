//! The Argo CD health check (deploy/argocd/health.lua) under Debian's Lua 5.1, against a fixture
//! Sequence for each state; and the argocd-cm snippet carries exactly that Lua.

mod support;

use serde_json::Value;
use support::argocd::health_by;
use support::repo_root;

/// Each fixture in `fixtures` (a `# expect: STATUS | MESSAGE` line on top) gets that health from
/// `script`, and the fixtures cover every status.
fn check_fixtures(fixtures: &str, script: &str) {
    let dir = repo_root().join(fixtures);
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", path.display()));
        let (status, message) = expect.split_once(" | ").unwrap();
        let object: Value = serde_saphyr::from_str(&text).unwrap();
        let (got_status, got_message) = health_by(script, &object);
        assert_eq!(got_status, status, "{}", path.display());
        assert!(
            got_message.contains(message),
            "{}: {got_message:?} does not contain {message:?}",
            path.display()
        );
        seen.push(got_status);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["Degraded", "Healthy", "Progressing", "Suspended"]);
}

#[test]
fn each_state_of_a_sequence_has_its_health() {
    check_fixtures("tests/fixtures/argocd", "deploy/argocd/health.lua");
}

#[test]
fn each_state_of_a_scheduled_sequence_has_its_health() {
    check_fixtures(
        "tests/fixtures/argocd-scheduled",
        "deploy/argocd/scheduled-health.lua",
    );
}

#[test]
fn the_argocd_cm_snippet_carries_health_lua() {
    let lua = std::fs::read_to_string(repo_root().join("deploy/argocd/health.lua")).unwrap();
    let cm: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/argocd/argocd-cm.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    assert_eq!(
        cm["data"]["resource.customizations.health.sequencer.dev_Sequence"]
            .as_str()
            .unwrap(),
        lua
    );
    let scheduled =
        std::fs::read_to_string(repo_root().join("deploy/argocd/scheduled-health.lua")).unwrap();
    assert_eq!(
        cm["data"]["resource.customizations.health.sequencer.dev_ScheduledSequence"]
            .as_str()
            .unwrap(),
        scheduled
    );
    let app: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/argocd/application.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(app["spec"]["source"]["path"], "charts/sequencer");
    assert!(
        app["spec"]["syncPolicy"]["syncOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "ServerSideApply=true")
    );
}
