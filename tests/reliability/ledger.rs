//! The valid Sequences of the reliability run, what each must launch (step, attempt, task count)
//! and end as, and the judgement of what ECS actually ran against that.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::support::world::{World, step};

/// Every valid Sequence's name starts so; tasks are told apart by the step tag `n:<name>-s<n>`.
pub const PREFIX: &str = "rel-";

pub struct Design {
    pub name: String,
    pub steps: Vec<Value>,
    /// (step number, attempt) → how many tasks that attempt starts.
    pub expected: BTreeMap<(usize, u32), usize>,
    /// `Complete` or `Failed`.
    pub outcome: &'static str,
}

/// The task definitions the designs use: a task that succeeds, one that fails (exit 3), and one
/// that fails its first attempt only.
pub async fn task_definitions(world: &World, seconds: u64) {
    let seconds = seconds.to_string();
    let emu = &world.emu;
    emu.task_definition("rel", &["app"], &[("SEQ_EMU_SECONDS", &seconds)])
        .await;
    emu.task_definition(
        "relbad",
        &["app"],
        &[("SEQ_EMU_SECONDS", &seconds), ("SEQ_EMU_EXIT_CODE", "3")],
    )
    .await;
    emu.task_definition(
        "relflaky",
        &["app"],
        &[
            ("SEQ_EMU_SECONDS", &seconds),
            ("SEQ_EMU_FAIL_ATTEMPTS", "1"),
        ],
    )
    .await;
}

/// Sequence `i`: one of five shapes, in turn.
/// - plain: every step once;
/// - counted: every odd step with `count: 3`;
/// - flaky: step 2 fails its first attempt and succeeds on the retry;
/// - failing: a step fails without retry, so the later steps never run;
/// - exhausted: step 2 fails all three attempts its retry policy allows.
pub fn design(i: usize, steps: usize) -> Design {
    let kinds = ["plain", "counted", "flaky", "failing", "exhausted"];
    let kind = kinds[i % kinds.len()];
    let name = format!("{PREFIX}{i:02}-{kind}");
    let exit_retry = json!({"limit": 2, "when": ["exitCode"],
                            "backoff": {"initialSeconds": 1, "maxSeconds": 2}});
    let failing_step = 6.min(steps - 1);
    let mut expected = BTreeMap::new();
    let mut list = Vec::new();
    let mut outcome = "Complete";
    for n in 1..=steps {
        let step_name = format!("{name}-s{n}");
        let mut body = step(&step_name, "rel");
        let mut attempts = vec![1];
        let mut count = 1;
        match kind {
            "counted" if n % 2 == 1 => {
                body["parameters"]["count"] = json!(3);
                count = 3;
            }
            "flaky" if n == 2 => {
                body["parameters"]["taskDefinition"] = json!("relflaky:1");
                body["retry"] = exit_retry.clone();
                attempts = vec![1, 2];
            }
            "failing" if n == failing_step => {
                body["parameters"]["taskDefinition"] = json!("relbad:1");
                outcome = "Failed";
            }
            "failing" if n > failing_step => attempts = vec![],
            "exhausted" if n == 2 => {
                body["parameters"]["taskDefinition"] = json!("relbad:1");
                body["retry"] = exit_retry.clone();
                attempts = vec![1, 2, 3];
                outcome = "Failed";
            }
            "exhausted" if n > 2 => attempts = vec![],
            _ => {}
        }
        for attempt in attempts {
            expected.insert((n, attempt), count);
        }
        list.push(body);
    }
    Design {
        name,
        steps: list,
        expected,
        outcome,
    }
}

fn condition(seq: &sequencer::api::sequence::Sequence, type_: &str) -> bool {
    seq.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

/// Whether every valid Sequence is Complete or Failed (a read error counts as not yet). Read one
/// by one: a list would also return the malformed ones, which do not decode.
pub async fn all_final(world: &World, designs: &[Design]) -> bool {
    for design in designs {
        match world.sequences().get(&design.name).await {
            Ok(seq) if condition(&seq, "Complete") || condition(&seq, "Failed") => {}
            _ => return false,
        }
    }
    true
}

#[derive(Default)]
pub struct Verdict {
    pub expected_attempts: usize,
    pub duplicates: Vec<String>,
    pub lost: Vec<String>,
    pub wrong_state: Vec<String>,
    pub stuck: Vec<String>,
}

/// The value of tag `key` in a list of ECS tags (`[{key, value}]`).
fn tag<'a>(tags: &'a Value, key: &str) -> Option<&'a str> {
    tags.as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .and_then(|t| t["value"].as_str())
}

/// Every task ECS holds, as (step tag, attempt tag) → task ARNs; and the startedBy of each group.
async fn tasks(world: &World) -> BTreeMap<(String, String), (Vec<String>, BTreeSet<String>)> {
    let ecs = world.emu.ecs().await;
    let arns = world.emu.task_arns("etl").await;
    let mut groups: BTreeMap<(String, String), (Vec<String>, BTreeSet<String>)> = BTreeMap::new();
    for chunk in arns.chunks(100) {
        let out = ecs
            .describe_tasks()
            .cluster("etl")
            .set_tasks(Some(chunk.to_vec()))
            .include(aws_sdk_ecs::types::TaskField::Tags)
            .send()
            .await
            .expect("describe tasks");
        for task in out.tasks() {
            let tags: Value = task
                .tags()
                .iter()
                .map(|t| json!({"key": t.key(), "value": t.value()}))
                .collect();
            let key = (
                tag(&tags, "sequencer.dev/step")
                    .unwrap_or_default()
                    .to_owned(),
                tag(&tags, "sequencer.dev/attempt")
                    .unwrap_or_default()
                    .to_owned(),
            );
            let group = groups.entry(key).or_default();
            group.0.push(task.task_arn().unwrap_or_default().to_owned());
            group
                .1
                .insert(task.started_by().unwrap_or_default().to_owned());
        }
    }
    groups
}

/// The clientTokens RunTask was called with, per (step tag, attempt tag).
fn tokens(world: &World) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut tokens: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for call in world.emu.calls_of("RunTask") {
        let tags = &call["request"]["tags"];
        let key = (
            tag(tags, "sequencer.dev/step")
                .unwrap_or_default()
                .to_owned(),
            tag(tags, "sequencer.dev/attempt")
                .unwrap_or_default()
                .to_owned(),
        );
        tokens
            .entry(key)
            .or_default()
            .insert(call["clientToken"].as_str().unwrap_or_default().to_owned());
    }
    tokens
}

/// What ran against what should have: duplicates (more tasks or tokens than one launch of the
/// attempt, or an attempt that should never have started), lost steps (fewer tasks than the
/// attempt's count), and each Sequence's final condition.
pub async fn judge(world: &World, designs: &[Design]) -> Verdict {
    let mut verdict = Verdict::default();
    let ran = tasks(world).await;
    let tokens = tokens(world);
    let mut seen = BTreeSet::new();
    for design in designs {
        for ((n, attempt), count) in &design.expected {
            verdict.expected_attempts += 1;
            let key = (format!("{n}:{}-s{n}", design.name), attempt.to_string());
            seen.insert(key.clone());
            let (arns, started_by) = ran.get(&key).cloned().unwrap_or_default();
            let what = format!("{} step {n} attempt {attempt}", design.name);
            if arns.len() > *count || started_by.len() > 1 {
                verdict
                    .duplicates
                    .push(format!("{what}: {} tasks for count {count}", arns.len()));
            } else if arns.len() < *count {
                verdict
                    .lost
                    .push(format!("{what}: {} of {count} tasks", arns.len()));
            }
            if tokens.get(&key).is_some_and(|t| t.len() > 1) {
                verdict.duplicates.push(format!(
                    "{what}: RunTask with {} clientTokens",
                    tokens[&key].len()
                ));
            }
        }
        let seq = world.sequences().get(&design.name).await.expect("get");
        let complete = condition(&seq, "Complete");
        let failed = condition(&seq, "Failed");
        if !complete && !failed {
            verdict.stuck.push(design.name.clone());
        } else if !condition(&seq, design.outcome) {
            verdict
                .wrong_state
                .push(format!("{} should be {}", design.name, design.outcome));
        }
    }
    for (key, (arns, _)) in &ran {
        if key.0.contains(&format!(":{PREFIX}")) && !seen.contains(key) {
            verdict.duplicates.push(format!(
                "{} attempt {}: {} task(s) never expected",
                key.0,
                key.1,
                arns.len()
            ));
        }
    }
    verdict
}

/// RunTask calls for a malformed step (their step names start with `malformed`).
pub fn malformed_launches(world: &World) -> usize {
    world
        .emu
        .calls_of("RunTask")
        .iter()
        .filter(|c| {
            tag(&c["request"]["tags"], "sequencer.dev/step")
                .is_some_and(|s| s.contains(":malformed"))
                || c["startedBy"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("malformed"))
        })
        .count()
}

/// The malformed steps RunTask was called for, for the failure message.
pub fn malformed_launched_steps(world: &World) -> BTreeSet<String> {
    world
        .emu
        .calls_of("RunTask")
        .iter()
        .filter_map(|c| tag(&c["request"]["tags"], "sequencer.dev/step").map(str::to_owned))
        .filter(|s| s.contains(":malformed"))
        .collect()
}
