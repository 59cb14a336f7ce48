//! Tenancy allow-lists: what an admin lets the Sequences of some namespaces run, checked on the
//! resolved plan (after a ConfigMap, S3 or git source has been read), so that no source gets
//! around it. A list that is absent allows anything; an empty list allows nothing. The first
//! field a step breaks is reported with the step, the value and what is allowed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::PlannedStep;
use crate::run_task::LaunchType;

/// What the steps of the selected namespaces may use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Allowed {
    /// ECS clusters, by name or ARN. A step without `cluster` runs on the account's `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    /// Task definitions: a family (`etl` allows `etl`, `etl:3` and their ARNs: ECS runs only task
    /// definitions of the caller's account and region), a family prefix ending in `*`
    /// (`team-a-*`), or an ARN prefix (`arn:aws:ecs:eu-west-1:111111111111:task-definition/team-a-`,
    /// which only steps naming their task definition by ARN can match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definitions: Option<Vec<String>>,
    /// Values of `overrides.taskRoleArn`; `[]`: no step may set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arns: Option<Vec<String>>,
    /// Values of `overrides.executionRoleArn`; `[]`: no step may set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arns: Option<Vec<String>>,
    /// `launchType` values (EC2, FARGATE, EXTERNAL, MANAGED_INSTANCES). When set, every step must
    /// name one of them: a capacity provider strategy or the cluster's default is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_types: Option<Vec<LaunchType>>,
    /// AWS regions the runs may launch in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<String>>,
    /// S3 buckets batch files may be read from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_buckets: Option<Vec<String>>,
    /// Git URL prefixes batch files may be read from (`https://git.example.com/team-a/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_url_prefixes: Option<Vec<String>>,
    /// The largest `count` (tasks per step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub max_count: Option<u32>,
    /// Whether steps may override a container's command (default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_overrides: Option<bool>,
    /// Whether steps may override a container's environment or environment files (default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_overrides: Option<bool>,
}

/// Why a run may not start: the step (absent for the run's source and region), the field, the
/// value it has, what is allowed and the policy that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub policy: String,
    pub step: Option<(usize, String)>,
    pub field: String,
    pub value: String,
    pub allowed: String,
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((index, name)) = &self.step {
            write!(f, "step {} ({name}): ", index + 1)?;
        }
        write!(
            f,
            "{} {} is not allowed by SequencePolicy {}: {}",
            self.field, self.value, self.policy, self.allowed
        )
    }
}

/// Where a run's steps came from, as far as the allow-lists care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Inline,
    ConfigMap,
    S3 { bucket: String },
    Git { url: String },
}

/// Checks a resolved run against one policy: its region and source first, then every step.
pub fn check(
    policy: &str,
    allowed: &Allowed,
    region: &str,
    origin: &Origin,
    steps: &[PlannedStep],
) -> Result<(), Box<Denial>> {
    check_origin(policy, allowed, region, origin)?;
    check_steps(policy, allowed, steps.iter().enumerate())
}

fn denial(
    policy: &str,
    step: Option<(usize, String)>,
    field: &str,
    value: &str,
    allowed: String,
) -> Box<Denial> {
    Box::new(Denial {
        policy: policy.to_owned(),
        step,
        field: field.to_owned(),
        value: quoted(value),
        allowed,
    })
}

/// Checks where a run comes from (its region, its S3 bucket or git URL) before the source is
/// read, so that a batch file is never fetched from a place the policy does not allow.
pub fn check_origin(
    policy: &str,
    allowed: &Allowed,
    region: &str,
    origin: &Origin,
) -> Result<(), Box<Denial>> {
    let deny =
        |field: &str, value: &str, allowed: String| denial(policy, None, field, value, allowed);
    if let Some(regions) = &allowed.regions
        && !regions.iter().any(|r| r == region)
    {
        return Err(deny("region", region, one_of(regions)));
    }
    match origin {
        Origin::S3 { bucket } => {
            if let Some(buckets) = &allowed.source_buckets
                && !buckets.iter().any(|b| b == bucket)
            {
                return Err(deny("source.s3 bucket", bucket, one_of(buckets)));
            }
        }
        Origin::Git { url } => {
            if let Some(prefixes) = &allowed.git_url_prefixes
                && !prefixes.iter().any(|p| url.starts_with(p.as_str()))
            {
                let what = format!("a URL starting with {}", one_of(prefixes));
                return Err(deny("source.git url", url, what));
            }
        }
        Origin::Inline | Origin::ConfigMap => {}
    }
    Ok(())
}

/// Checks steps (each with its index in the plan) against one policy; the first field broken is
/// reported.
pub fn check_steps<'a>(
    policy: &str,
    allowed: &Allowed,
    steps: impl IntoIterator<Item = (usize, &'a PlannedStep)>,
) -> Result<(), Box<Denial>> {
    for (index, step) in steps {
        check_step(allowed, step).map_err(|(field, value, what)| {
            denial(
                policy,
                Some((index, step.name.clone())),
                field,
                &value,
                what,
            )
        })?;
    }
    Ok(())
}

type Refusal = (&'static str, String, String);

fn check_step(allowed: &Allowed, step: &PlannedStep) -> Result<(), Refusal> {
    let p = &step.definition.parameters;
    if let Some(clusters) = &allowed.clusters {
        let cluster = p.cluster.as_deref().unwrap_or("default");
        if !clusters.iter().any(|c| same_cluster(c, cluster)) {
            return Err(("cluster", cluster.to_owned(), one_of(clusters)));
        }
    }
    if let Some(definitions) = &allowed.task_definitions
        && !definitions
            .iter()
            .any(|d| definition_matches(d, &p.task_definition))
    {
        return Err((
            "taskDefinition",
            p.task_definition.clone(),
            one_of(definitions),
        ));
    }
    let overrides = p.overrides.as_ref();
    for (field, value, list) in [
        (
            "overrides.taskRoleArn",
            overrides.and_then(|o| o.task_role_arn.as_deref()),
            &allowed.task_role_arns,
        ),
        (
            "overrides.executionRoleArn",
            overrides.and_then(|o| o.execution_role_arn.as_deref()),
            &allowed.execution_role_arns,
        ),
    ] {
        if let (Some(value), Some(list)) = (value, list)
            && !list.iter().any(|a| a == value)
        {
            return Err((field, value.to_owned(), one_of(list)));
        }
    }
    if let Some(types) = &allowed.launch_types {
        let names: Vec<String> = types.iter().map(|t| launch_type_name(*t)).collect();
        match p.launch_type {
            Some(t) if types.contains(&t) => {}
            Some(t) => return Err(("launchType", launch_type_name(t), one_of(&names))),
            None => {
                let what = format!("launchType set to {}", one_of(&names));
                let value = if p.capacity_provider_strategy.is_empty() {
                    "(none: the cluster's default)"
                } else {
                    "(none: a capacity provider strategy)"
                };
                return Err(("launchType", value.to_owned(), what));
            }
        }
    }
    if let Some(max) = allowed.max_count {
        let count = p.count.unwrap_or(1);
        if count > max {
            return Err(("count", count.to_string(), format!("at most {max}")));
        }
    }
    let containers = overrides.map_or(&[][..], |o| &o.container_overrides[..]);
    for c in containers {
        if allowed.command_overrides == Some(false) && c.command.is_some() {
            let field = "overrides.containerOverrides[].command";
            return Err((field, c.name.clone(), "no command overrides".into()));
        }
        if allowed.environment_overrides == Some(false)
            && (!c.environment.is_empty() || !c.environment_files.is_empty())
        {
            let field = "overrides.containerOverrides[].environment";
            return Err((field, c.name.clone(), "no environment overrides".into()));
        }
    }
    Ok(())
}

/// A cluster named by name or ARN: `etl` and `arn:aws:ecs:REGION:ACCOUNT:cluster/etl` are the same
/// cluster when the allowed entry is a name; an ARN entry must match exactly.
fn same_cluster(allowed: &str, cluster: &str) -> bool {
    if allowed == cluster {
        return true;
    }
    !allowed.starts_with("arn:")
        && cluster
            .rsplit_once(":cluster/")
            .is_some_and(|(_, name)| name == allowed)
}

fn definition_matches(allowed: &str, definition: &str) -> bool {
    if allowed.starts_with("arn:") {
        return definition.starts_with(allowed);
    }
    let family = family_of(definition);
    match allowed.strip_suffix('*') {
        Some(prefix) => family.starts_with(prefix),
        None => family == allowed,
    }
}

/// The family of `family`, `family:rev` or `arn:...:task-definition/family:rev`.
fn family_of(definition: &str) -> &str {
    let name = definition
        .rsplit_once(":task-definition/")
        .map_or(definition, |(_, name)| name);
    name.split(':').next().unwrap_or(name)
}

fn launch_type_name(t: LaunchType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{t:?}"))
}

fn quoted(value: &str) -> String {
    format!("{value:?}")
}

fn one_of(list: &[String]) -> String {
    if list.is_empty() {
        return "none is allowed".into();
    }
    let shown: Vec<String> = list.iter().map(|v| quoted(v)).collect();
    format!("one of {}", shown.join(", "))
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
