//! Resolving a Sequence's plan: the steps pinned in `.status` once the run has started, else the
//! spec's inline steps or the batch file its `source` names (a ConfigMap or an S3 object), checked
//! exactly as the CLI checks a batch file. Every refusal names the place and what is wrong.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ResourceExt};
use serde_json::Value;

use crate::api::conditions::{INVALID_SPEC, INVALID_STATUS, POLICY_DENIED, SOURCE_ERROR};
use crate::api::sequence::{PinnedSpec, Sequence, spec_digest, text_digest};
use crate::controller::sequence::git_source::{git_location, read_git};
use crate::controller::sequence::refusal::Refusal;
use crate::controller::tenancy::policies::Governing;
use crate::ecs::clients::RegionClients;
use crate::source::{BatchSource, LoadedBatch};
use sequencer_core::plan::{Plan, PlannedStep};
use sequencer_core::policy::{self, Origin};

/// A plan, with where it came from.
pub struct Resolved {
    pub plan: Plan,
    pub pinned: PinnedSpec,
    /// What changed in the spec since the plan was pinned (a message), if anything did.
    pub spec_changed: Option<String>,
}

/// The plan to run now. Run options (`suspend`, `activeDeadlineSeconds`, `pollIntervalSeconds`)
/// come from the current spec at every reconcile; the steps, their source and the region are
/// fixed when the run starts, after the policies `governing` the namespace allowed them (a started
/// run is checked before each launch instead, see `check_remaining`).
pub async fn resolve(
    seq: &Sequence,
    clients: &RegionClients,
    client: &kube::Client,
    governing: &Governing,
    default_poll_interval_seconds: u64,
) -> Result<Resolved, Refusal> {
    let status = seq.status.as_ref();
    let digest = spec_digest(&seq.spec);
    let (steps, pinned, spec_changed) = match status.and_then(|s| s.plan.as_ref()) {
        Some(plan) => {
            let steps: Vec<PlannedStep> = plan.parse().map_err(|e| {
                Refusal::new(INVALID_STATUS, format!("status.plan cannot be read: {e}"))
            })?;
            let pinned = status
                .and_then(|s| s.pinned.clone())
                .unwrap_or_else(|| PinnedSpec {
                    // A run pinned before this record existed: assume the spec it has now.
                    spec_digest: digest.clone(),
                    region: clients.region.clone(),
                    source: "spec".into(),
                    ..Default::default()
                });
            let changed = (pinned.spec_digest != digest).then(|| {
                format!(
                    "spec.steps, spec.source or spec.region changed (generation {}) after the run started from generation {}; the run goes on with the plan pinned then. Create a new Sequence to run the new spec",
                    seq.metadata.generation.unwrap_or_default(),
                    pinned.generation.unwrap_or_default()
                )
            });
            (steps, pinned, changed)
        }
        None => {
            let policies = governing
                .as_ref()
                .map_err(|why| Refusal::new(POLICY_DENIED, why.clone()))?;
            // Where the batch comes from is judged before it is read.
            let origin = origin_of(seq);
            for p in policies {
                policy::check_origin(&p.name_any(), &p.spec.allowed, &clients.region, &origin)
                    .map_err(|denial| Refusal::new(POLICY_DENIED, denial.to_string()))?;
            }
            let (steps, loaded) = fresh_steps(seq, clients, client).await?;
            for p in policies {
                policy::check_steps(&p.name_any(), &p.spec.allowed, steps.iter().enumerate())
                    .map_err(|denial| Refusal::new(POLICY_DENIED, denial.to_string()))?;
            }
            let git_commit = loaded.as_ref().and_then(|l| l.git_commit.clone());
            let source_digest = loaded.as_ref().map(|l| text_digest(&l.text));
            let object = loaded.and_then(|l| l.s3);
            let pinned = PinnedSpec {
                generation: seq.metadata.generation,
                spec_digest: digest,
                region: clients.region.clone(),
                source: source_label(seq),
                s3_version_id: object.as_ref().and_then(|o| o.version_id.clone()),
                s3_etag: object.as_ref().and_then(|o| o.etag.clone()),
                aws_role_arn: clients.role.as_ref().map(|r| r.role_arn.clone()),
                aws_external_id: clients.role.as_ref().and_then(|r| r.external_id.clone()),
                git_commit,
                source_digest,
            };
            (steps, pinned, None)
        }
    };
    let mut plan = Plan::new(steps);
    plan.poll_interval_seconds = seq
        .spec
        .poll_interval_seconds
        .unwrap_or(default_poll_interval_seconds);
    plan.suspended = seq.spec.suspend;
    plan.active_deadline_seconds = seq.spec.active_deadline_seconds;
    Ok(Resolved {
        plan,
        pinned,
        spec_changed,
    })
}

/// Where the batch of a Sequence that has not started comes from, as the policies see it.
fn origin_of(seq: &Sequence) -> Origin {
    let source = seq.spec.source.as_ref();
    if let Some(s3) = source.and_then(|s| s.s3.as_ref()) {
        // A URI that is not s3://bucket/key is refused as InvalidSpec when it is read; until then
        // the whole text stands for the bucket, which no allow-list names.
        let bucket = match BatchSource::parse(&s3.uri) {
            Ok(BatchSource::S3(location)) => location.bucket,
            _ => s3.uri.clone(),
        };
        return Origin::S3 { bucket };
    }
    if let Some(git) = source.and_then(|s| s.git.as_ref()) {
        return Origin::Git {
            url: git.url.clone(),
        };
    }
    if source.is_some_and(|s| s.config_map.is_some()) {
        return Origin::ConfigMap;
    }
    Origin::Inline
}

/// Checks the steps of a started run that may still launch a task (those not finished: a running
/// step may retry) against the policies governing its namespace now, so that a policy narrowed
/// mid-run stops the next launch.
pub fn check_remaining(
    governing: &Governing,
    plan: &Plan,
    run: &sequencer_core::status::RunStatus,
) -> Result<(), Refusal> {
    let policies = governing
        .as_ref()
        .map_err(|why| Refusal::new(POLICY_DENIED, why.clone()))?;
    let remaining = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(i, _)| run.steps.get(*i).is_none_or(|s| !s.phase.is_terminal()));
    let remaining: Vec<(usize, &PlannedStep)> = remaining.collect();
    for p in policies {
        policy::check_steps(&p.name_any(), &p.spec.allowed, remaining.iter().copied())
            .map_err(|denial| Refusal::new(POLICY_DENIED, denial.to_string()))?;
    }
    Ok(())
}

fn source_label(seq: &Sequence) -> String {
    if let Some(git) = seq.spec.source.as_ref().and_then(|s| s.git.as_ref()) {
        return git_location(git).to_string();
    }
    match seq.spec.source.as_ref().map(|s| (&s.s3, &s.config_map)) {
        Some((Some(s3), _)) => s3.uri.clone(),
        Some((None, Some(cm))) => format!(
            "configmap {}/{} key {}",
            seq.namespace().unwrap_or_default(),
            cm.name,
            cm.key
        ),
        _ => "spec.steps".into(),
    }
}

/// The steps the spec gives now, checked.
async fn fresh_steps(
    seq: &Sequence,
    clients: &RegionClients,
    client: &kube::Client,
) -> Result<(Vec<PlannedStep>, Option<LoadedBatch>), Refusal> {
    match (&seq.spec.source, seq.spec.steps.is_empty()) {
        (Some(_), false) => Err(Refusal::new(
            INVALID_SPEC,
            "give either spec.steps or spec.source, not both",
        )),
        (Some(_), true) => {
            let loaded = read_source(seq, clients, client).await?;
            let steps =
                crate::batch::file::parse(&loaded.label, &loaded.text).map_err(|invalid| {
                    let problems: Vec<String> = invalid.0.iter().map(ToString::to_string).collect();
                    Refusal::new(INVALID_SPEC, problems.join("; "))
                })?;
            Ok((steps, Some(loaded)))
        }
        (None, true) => Err(Refusal::new(
            INVALID_SPEC,
            "spec.steps is empty: give at least one step (or spec.source)",
        )),
        (None, false) => {
            check_steps(&seq.spec.steps)?;
            Ok((seq.spec.steps.clone(), None))
        }
    }
}

/// Reads the seed-format batch file the Sequence's source names. It is read once: the steps are
/// then pinned in `.status.plan`, so a later change of the object or the ConfigMap does not alter
/// the run.
async fn read_source(
    seq: &Sequence,
    clients: &RegionClients,
    client: &kube::Client,
) -> Result<LoadedBatch, Refusal> {
    let source = seq.spec.source.as_ref();
    if let Some(git) = source.and_then(|s| s.git.as_ref()) {
        if source.is_some_and(|s| s.s3.is_some() || s.config_map.is_some()) {
            return Err(Refusal::new(
                INVALID_SPEC,
                "spec.source needs exactly one of s3, configMap and git",
            ));
        }
        return read_git(seq, git, client).await;
    }
    match source.map(|s| (&s.s3, &s.config_map)) {
        Some((Some(s3), None)) => {
            let Ok(BatchSource::S3(mut location)) = BatchSource::parse(&s3.uri) else {
                return Err(Refusal::new(
                    INVALID_SPEC,
                    format!("spec.source.s3.uri: `{}` is not s3://bucket/key", s3.uri),
                ));
            };
            location.version_id = s3.version_id.clone();
            crate::source::load_s3(&clients.s3(), &location)
                .await
                .map_err(|e| Refusal::new(SOURCE_ERROR, e.to_string()))
        }
        Some((None, Some(cm))) => {
            let namespace = seq.namespace().unwrap_or_default();
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let label = format!("configmap {namespace}/{} key {}", cm.name, cm.key);
            let map = match api.get_opt(&cm.name).await {
                Ok(Some(map)) => map,
                Ok(None) => {
                    return Err(Refusal::new(
                        SOURCE_ERROR,
                        format!("{label}: the ConfigMap does not exist"),
                    ));
                }
                Err(e) => return Err(Refusal::new(SOURCE_ERROR, format!("{label}: {e}"))),
            };
            let Some(text) = map.data.as_ref().and_then(|d| d.get(&cm.key)).cloned() else {
                let keys: Vec<String> = map.data.unwrap_or_default().into_keys().collect();
                return Err(Refusal::new(
                    SOURCE_ERROR,
                    format!(
                        "{label}: no such key (the ConfigMap has: {})",
                        keys.join(", ")
                    ),
                ));
            };
            Ok(LoadedBatch {
                label,
                text,
                s3: None,
                git_commit: None,
            })
        }
        _ => Err(Refusal::new(
            INVALID_SPEC,
            "spec.source needs exactly one of s3, configMap and git",
        )),
    }
}

/// The same checks a batch file gets (the API server checked the schema; these are the ECS limits
/// and the rules a schema cannot say), with the key path of every problem.
pub fn check_steps(steps: &[PlannedStep]) -> Result<(), Refusal> {
    let max = crate::batch::file::MAX_STEPS;
    if steps.len() > max {
        let message = format!(
            "spec.steps: {} steps; a Sequence has at most {max}",
            steps.len()
        );
        return Err(Refusal::new(INVALID_SPEC, message));
    }
    let bodies = steps.iter().map(|s| {
        let body = serde_json::to_value(&s.definition).unwrap_or(Value::Null);
        (s.name.clone(), body)
    });
    let problems = step_problems(bodies);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Refusal::new(INVALID_SPEC, problems.join("; ")))
    }
}

/// Every problem the batch checker finds in these steps (name, body as JSON), each as
/// `spec.steps[i].key.path (name): what is wrong and what is allowed`.
pub fn step_problems(steps: impl Iterator<Item = (String, Value)>) -> Vec<String> {
    let checker = crate::batch::file::step_checker();
    let mut problems = Vec::new();
    for (i, (name, body)) in steps.enumerate() {
        let node = crate::batch::yaml::from_json(&body);
        if let Err(found) = crate::batch::file::check_step(&checker, &node) {
            problems.extend(found.into_iter().map(|p| {
                let path = if p.path.is_empty() {
                    String::new()
                } else {
                    format!(".{}", p.path)
                };
                format!("spec.steps[{i}]{path} ({name}): {}", p.message)
            }));
        }
    }
    problems
}
