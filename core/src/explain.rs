//! Words for what ECS reports: stop codes, stopped reasons, container exit codes and reasons, and
//! RunTask's `failures[]` reasons, each said plainly with what to check. The judge and the launch
//! rules put these into the failure messages every runner shows; README's "Why a step failed"
//! table lists the same cases.

/// What a stop code means, when ECS (not the workload) ended the task.
pub fn stop_code(code: &str) -> Option<&'static str> {
    Some(match code {
        "TaskFailedToStart" => "the task failed to start",
        "SpotInterruption" => {
            "AWS reclaimed the Spot capacity the task ran on (a Spot interruption); \
             `retry: {when: [infrastructure]}` runs the step again"
        }
        "TerminationNotice" => {
            "the host the task ran on was being retired or terminated (a termination notice); \
             `retry: {when: [infrastructure]}` runs the step again"
        }
        "ServiceSchedulerInitiated" => "an ECS service scheduler stopped the task",
        "UserInitiated" => "someone stopped the task (StopTask) outside this run",
        _ => return None,
    })
}

/// What a `TaskFailedToStart` stopped reason (or a container reason) means, and what to check.
pub fn start_failure(reason: &str) -> Option<&'static str> {
    let lower = reason.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    // "eni" as a word: inside "denied" it means nothing.
    let eni = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "eni");
    Some(if has("cannotpullcontainer") || has("pull image") {
        "the image could not be pulled: check the image name and tag, the execution role's \
         permission to pull it (ECR), and the network path to the registry (a NAT gateway, VPC \
         endpoints, or a public IP)"
    } else if (has("resourceinitializationerror") || has("unable to"))
        && (has("secret") || has("ssm") || has("parameter"))
    {
        "the task's secrets could not be fetched: check the execution role's permission for \
         Secrets Manager or SSM Parameter Store (and KMS), and the network path to them"
    } else if eni || has("network interface") {
        "the task's network interface (ENI) could not be set up: check the subnets' free \
         addresses, the account's ENI limits, and the security groups"
    } else if has("log") && has("resourceinitializationerror") {
        "the task's log configuration could not be set up: check that the log group exists \
         and the execution role may write to it"
    } else if has("resourceinitializationerror") {
        "the task's resources (network, secrets, logs, volumes) could not be set up"
    } else if has("cannotcreatecontainer") || has("cannotstartcontainer") {
        "the container could not be created or started on the host"
    } else if has("outofmemory") {
        "a container ran out of memory"
    } else {
        return None;
    })
}

/// What a container's exit code (with its reason) says about how it ended.
pub fn exit(code: i32, reason: Option<&str>) -> Option<String> {
    let oom = reason.is_some_and(|r| r.to_ascii_lowercase().contains("outofmemory"));
    Some(match code {
        _ if oom => "it ran out of memory and was killed (OutOfMemoryError): give the \
                     container or the task more memory"
            .into(),
        137 => "it was killed (SIGKILL): after a stop that it did not heed within the stop \
                timeout, or by the kernel for memory"
            .into(),
        143 => "it was stopped (SIGTERM)".into(),
        139 => "it crashed (SIGSEGV, a segmentation fault)".into(),
        134 => "it aborted (SIGABRT)".into(),
        126 => "its command could not be executed (not executable)".into(),
        127 => "its command was not found in the image".into(),
        _ => return None,
    })
}

/// A hint for a RunTask refusal, by the ECS `failures[]` reason or the API error code.
pub fn launch(reason: &str) -> Option<&'static str> {
    let upper = reason.to_ascii_uppercase();
    Some(match upper.as_str() {
        r if r.starts_with("RESOURCE:") => {
            "no container instance in the cluster has enough of that resource free: add \
             capacity (or a capacity provider that scales), lower the task's size, or use Fargate; \
             `retry: {when: [launch]}` tries again later"
        }
        "AGENT" => {
            "the ECS agent of the chosen container instance is disconnected: check the \
             instances' ECS agents"
        }
        "ATTRIBUTE" => {
            "no container instance has the attributes the task needs (placement constraints, \
             platform, or a required capability)"
        }
        "MISSING" => "the container instance was not found in the cluster",
        "CLUSTERNOTFOUNDEXCEPTION" => {
            "check `cluster` and the region (spec.region, --region or AWS_REGION)"
        }
        "ACCESSDENIEDEXCEPTION" => {
            "the identity sequencer runs as may not do this: check its IAM policy (ecs:RunTask \
             and ecs:TagResource on the task definition, iam:PassRole for the task and \
             execution roles)"
        }
        "PLATFORMTASKDEFINITIONINCOMPATIBILITYEXCEPTION" | "PLATFORMUNKNOWNEXCEPTION" => {
            "the task definition does not fit the launch type or platform version"
        }
        "BLOCKEDEXCEPTION" => "the AWS account is blocked from ECS: contact AWS Support",
        _ if upper.contains("CAPACITY PROVIDER") || upper.contains("CAPACITYPROVIDER") => {
            "check capacityProviderStrategy: each named capacity provider must be associated \
             with the cluster and have capacity"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_are_named_by_what_ecs_writes() {
        let pull = "CannotPullContainerError: pull image manifest has been retried 1 time(s): \
                    failed to resolve ref docker.io/library/nope:latest";
        assert!(
            start_failure(pull)
                .unwrap()
                .starts_with("the image could not be pulled")
        );
        let secrets = "ResourceInitializationError: unable to pull secrets or registry auth: \
                       execution resource retrieval failed: unable to retrieve secret from asm";
        assert!(
            start_failure(secrets)
                .unwrap()
                .contains("secrets could not be fetched")
        );
        let eni = "Timeout waiting for network interface provisioning to complete.";
        assert!(start_failure(eni).unwrap().contains("(ENI)"));
        assert_eq!(start_failure("Essential container in task exited"), None);
        let logs = "ResourceInitializationError: failed to validate logger args: \
                    AccessDeniedException: access denied to the log group";
        let said = start_failure(logs).unwrap();
        assert!(said.contains("log configuration"), "{said}");
        assert!(
            start_failure("ENI provisioning failed")
                .unwrap()
                .contains("(ENI)")
        );
    }

    #[test]
    fn exit_codes_read_as_what_happened() {
        let oom = exit(
            137,
            Some("OutOfMemoryError: Container killed due to memory usage"),
        );
        assert!(oom.unwrap().contains("ran out of memory"));
        assert!(exit(137, None).unwrap().contains("SIGKILL"));
        assert!(exit(127, None).unwrap().contains("not found"));
        assert_eq!(exit(1, None), None);
    }

    #[test]
    fn launch_refusals_get_a_hint() {
        assert!(
            launch("RESOURCE:MEMORY")
                .unwrap()
                .contains("enough of that resource")
        );
        assert!(launch("AGENT").unwrap().contains("agent"));
        assert!(
            launch("ClusterNotFoundException")
                .unwrap()
                .contains("region")
        );
        let cp = "The specified capacity provider strategy cannot contain a capacity provider \
                  that is not associated with the cluster";
        assert!(launch(cp).unwrap().contains("capacityProviderStrategy"));
        assert_eq!(launch("SomethingNew"), None);
    }
}
