//! The Helm chart for tests: rendered with the pinned Helm library (tests/chart/install.sh).
#![allow(dead_code)]

use std::process::{Command, Stdio};

use serde_json::Value;

use super::repo_root;

pub fn helm_python() -> String {
    super::installed("SEQUENCER_HELM_PYTHON", "tests/chart/install.sh")
}

pub fn helm(args: &[&str], stdin: &Value) -> Value {
    use std::io::Write;
    let mut child = Command::new(helm_python())
        .arg(repo_root().join("tests/chart/helm.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run helm.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "helm.py {args:?} failed");
    serde_json::from_slice(&out.stdout).expect("helm.py prints JSON")
}

pub fn chart_path() -> String {
    repo_root()
        .join("charts/sequencer")
        .to_string_lossy()
        .into_owned()
}

/// The chart rendered as release `sequencer` in `sequencer-system`: every object, or Helm's error.
pub fn render(values: Value) -> Result<Vec<Value>, String> {
    let out = helm(
        &["render", &chart_path(), "sequencer", "sequencer-system"],
        &values,
    );
    if let Some(error) = out["error"].as_str() {
        return Err(error.to_owned());
    }
    let mut objects = Vec::new();
    for (template, text) in out["manifests"].as_object().unwrap() {
        if !template.ends_with(".yaml") {
            continue;
        }
        let text = text.as_str().unwrap_or_default();
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .unwrap_or_else(|e| panic!("{template} is not YAML: {e}\n{text}"));
        objects.extend(docs.into_iter().filter(|d| !d.is_null()));
    }
    Ok(objects)
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {objects:#?}"))
}
