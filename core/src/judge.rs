//! Judging a stopped ECS task: did it do its job?
//!
//! Order matters. ECS stop codes that say the infrastructure failed come first (a task that never
//! started has no meaningful exit code); then each counted container must have exited with a
//! success code. A missing exit code is a failure (the container never ran or was killed without
//! one): treating it as success is the classic bug of ECS runners.

use crate::explain;
use crate::status::{Failure, FailureClass, TaskRecord};
use crate::step::{ContainerPolicy, ContainerSelection, SuccessPolicy};

/// Stop codes that mean ECS, not the workload, ended the task.
const INFRASTRUCTURE_STOP_CODES: &[&str] =
    &["TaskFailedToStart", "SpotInterruption", "TerminationNotice"];

/// `None` when the task succeeded. `essential` lists the task definition's essential containers and
/// is required (by the engine) before judging under `containers: essential`.
pub fn judge_task(
    task: &TaskRecord,
    policy: &SuccessPolicy,
    essential: Option<&[String]>,
) -> Option<Failure> {
    let id = short_task_id(&task.task_arn);
    if task.missing {
        return Some(forgotten(id));
    }
    infrastructure_failure(task, id).or_else(|| exit_code_failure(task, policy, essential, id))
}

/// A task ECS answered MISSING for: whether it succeeded cannot be known.
fn forgotten(id: &str) -> Failure {
    Failure {
        class: FailureClass::OutcomeUnknown,
        reason: "TaskMissing".into(),
        message: format!(
            "task {id} is no longer known to ECS (DescribeTasks answered MISSING); its result could not be seen. \
             ECS forgets stopped tasks about an hour after they stop"
        ),
    }
}

/// A stop code saying ECS, not the workload, ended the task, with why it did not start in words.
fn infrastructure_failure(task: &TaskRecord, id: &str) -> Option<Failure> {
    let code = task
        .stop_code
        .as_deref()
        .filter(|c| INFRASTRUCTURE_STOP_CODES.contains(c))?;
    let stopped_reason = stopped_reason(task);
    let details = container_details(task);
    let what = explain::stop_code(code).unwrap_or("ECS stopped the task");
    // Why it did not start, in words, from the stopped reason or a container's reason.
    let why = std::iter::once(stopped_reason.unwrap_or_default())
        .chain(task.containers.iter().filter_map(|c| c.reason.as_deref()))
        .find_map(explain::start_failure)
        .map(|w| format!("; {w}"))
        .unwrap_or_default();
    Some(Failure {
        class: FailureClass::Infrastructure,
        reason: code.to_owned(),
        message: format!(
            "task {id}: {what} ({code}: {}){details}{why}",
            stopped_reason.unwrap_or("no reason given")
        ),
    })
}

/// A counted container that exited with a code not allowed, or with none; or no container to
/// judge at all.
fn exit_code_failure(
    task: &TaskRecord,
    policy: &SuccessPolicy,
    essential: Option<&[String]>,
    id: &str,
) -> Option<Failure> {
    let stopped_reason = stopped_reason(task);
    if counted_containers(task, policy, essential).is_empty() {
        return Some(Failure {
            class: FailureClass::ExitCode,
            reason: "NoCountedContainer".into(),
            message: format!(
                "task {id} reported no container to judge{}",
                stopped_reason
                    .map(|r| format!(" (stopped: {r})"))
                    .unwrap_or_default()
            ),
        });
    }
    let failing = failing_containers(task, policy, essential);
    if failing.is_empty() {
        return None;
    }
    let problems: Vec<String> = failing
        .iter()
        .map(|name| container_problem(task, name))
        .collect();
    let out_of_memory = failing.iter().any(|name| {
        task.containers
            .iter()
            .filter(|c| &c.name == name)
            .filter_map(|c| c.reason.as_deref())
            .any(|r| r.to_ascii_lowercase().contains("outofmemory"))
    });
    let reason = if out_of_memory {
        "OutOfMemory".to_owned()
    } else {
        task.stop_code
            .clone()
            .unwrap_or_else(|| "ContainerExitCode".into())
    };
    Some(Failure {
        class: FailureClass::ExitCode,
        reason,
        message: format!(
            "task {id}: {}{}",
            problems.join("; "),
            stopped_reason
                .filter(|r| !r.starts_with("Essential container in task exited"))
                .map(|r| format!(" (stopped: {r})"))
                .unwrap_or_default()
        ),
    })
}

/// What is wrong with one failing container, in words.
fn container_problem(task: &TaskRecord, name: &str) -> String {
    let Some(c) = task.containers.iter().find(|c| c.name == name) else {
        return format!("container {name} is not in the task");
    };
    let reason = c.reason.as_deref();
    match c.exit_code {
        Some(code) => {
            let words = explain::exit(code, reason)
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            format!(
                "container {name} exited with {code}{}{words}",
                reason_suffix(reason)
            )
        }
        None => format!(
            "container {name} has no exit code (it never ran, or was killed){}",
            reason_suffix(reason)
        ),
    }
}

/// ECS's stopped reason, when it gave one.
fn stopped_reason(task: &TaskRecord) -> Option<&str> {
    task.stopped_reason.as_deref().filter(|r| !r.is_empty())
}

/// The containers whose exit codes decide the task's result under `policy`.
pub fn counted_containers(
    task: &TaskRecord,
    policy: &SuccessPolicy,
    essential: Option<&[String]>,
) -> Vec<String> {
    match &policy.containers {
        ContainerSelection::Policy(ContainerPolicy::All) => {
            task.containers.iter().map(|c| c.name.clone()).collect()
        }
        ContainerSelection::Policy(ContainerPolicy::Essential) => {
            let essential = essential.unwrap_or_default();
            task.containers
                .iter()
                .map(|c| c.name.clone())
                .filter(|n| essential.iter().any(|e| e == n))
                .collect()
        }
        ContainerSelection::Named(names) => names.clone(),
    }
}

/// The counted containers that did not exit with a success code (or are not in the task).
pub fn failing_containers(
    task: &TaskRecord,
    policy: &SuccessPolicy,
    essential: Option<&[String]>,
) -> Vec<String> {
    counted_containers(task, policy, essential)
        .into_iter()
        .filter(|name| {
            task.containers
                .iter()
                .find(|c| &c.name == name)
                .and_then(|c| c.exit_code)
                .is_none_or(|code| !policy.exit_codes.contains(&code))
        })
        .collect()
}

fn reason_suffix(reason: Option<&str>) -> String {
    reason
        .filter(|r| !r.is_empty())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

fn container_details(task: &TaskRecord) -> String {
    let parts: Vec<String> = task
        .containers
        .iter()
        .filter_map(|c| {
            c.reason
                .as_deref()
                .filter(|r| !r.is_empty())
                .map(|r| format!("{}: {r}", c.name))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" [{}]", parts.join("; "))
    }
}

/// The task id at the end of an ARN, for messages.
pub fn short_task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ContainerRecord;
    use crate::step::default_exit_codes;

    fn task(stop_code: Option<&str>, containers: &[(&str, Option<i32>)]) -> TaskRecord {
        TaskRecord {
            task_arn: "arn:aws:ecs:us-east-1:1:task/c/abc".into(),
            last_status: Some("STOPPED".into()),
            stop_code: stop_code.map(Into::into),
            stopped_reason: Some("Essential container in task exited".into()),
            containers: containers
                .iter()
                .map(|(n, code)| ContainerRecord {
                    name: (*n).into(),
                    exit_code: *code,
                    reason: None,
                    last_status: Some("STOPPED".into()),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn policy(containers: ContainerSelection, exit_codes: Vec<i32>) -> SuccessPolicy {
        SuccessPolicy {
            containers,
            exit_codes,
        }
    }

    #[test]
    fn all_containers_zero_is_success() {
        let t = task(
            Some("EssentialContainerExited"),
            &[("app", Some(0)), ("log", Some(0))],
        );
        assert_eq!(judge_task(&t, &SuccessPolicy::default_policy(), None), None);
    }

    #[test]
    fn a_sidecar_exit_fails_under_all_but_not_under_named_or_essential() {
        let t = task(
            Some("EssentialContainerExited"),
            &[("app", Some(0)), ("log", Some(137))],
        );
        let f = judge_task(&t, &SuccessPolicy::default_policy(), None).unwrap();
        assert_eq!(f.class, FailureClass::ExitCode);
        assert!(
            f.message.contains("container log exited with 137"),
            "{}",
            f.message
        );
        let named = policy(
            ContainerSelection::Named(vec!["app".into()]),
            default_exit_codes(),
        );
        assert_eq!(judge_task(&t, &named, None), None);
        let essential = policy(
            ContainerSelection::Policy(ContainerPolicy::Essential),
            default_exit_codes(),
        );
        assert_eq!(judge_task(&t, &essential, Some(&["app".to_owned()])), None);
    }

    #[test]
    fn missing_exit_code_is_a_failure() {
        let t = task(Some("EssentialContainerExited"), &[("app", None)]);
        let f = judge_task(&t, &SuccessPolicy::default_policy(), None).unwrap();
        assert_eq!(f.class, FailureClass::ExitCode);
        assert!(f.message.contains("no exit code"));
    }

    #[test]
    fn infrastructure_stop_codes_win_over_exit_codes() {
        let t = task(Some("SpotInterruption"), &[("app", Some(0))]);
        let f = judge_task(&t, &SuccessPolicy::default_policy(), None).unwrap();
        assert_eq!(
            (f.class, f.reason.as_str()),
            (FailureClass::Infrastructure, "SpotInterruption")
        );
    }

    #[test]
    fn chosen_success_codes_are_honoured() {
        let t = task(None, &[("app", Some(3))]);
        assert_eq!(
            judge_task(&t, &policy(ContainerSelection::default(), vec![0, 3]), None),
            None
        );
        assert!(judge_task(&t, &SuccessPolicy::default_policy(), None).is_some());
    }

    #[test]
    fn a_named_container_absent_from_the_task_fails() {
        let t = task(None, &[("app", Some(0))]);
        let f = judge_task(
            &t,
            &policy(ContainerSelection::Named(vec!["db".into()]), vec![0]),
            None,
        )
        .unwrap();
        assert!(f.message.contains("container db is not in the task"));
    }

    #[test]
    fn a_missing_task_is_an_unknown_outcome_not_an_infrastructure_failure() {
        let t = TaskRecord {
            task_arn: "arn/x".into(),
            missing: true,
            ..Default::default()
        };
        assert_eq!(
            judge_task(&t, &SuccessPolicy::default_policy(), None)
                .unwrap()
                .class,
            FailureClass::OutcomeUnknown
        );
    }
}
