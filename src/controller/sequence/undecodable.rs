//! Sequences the controller cannot decode, whatever is wrong with them, and how they are refused:
//! on the object itself, with a condition and a Warning Event, and nothing launched.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::api::conditions::INVALID_SPEC;
use crate::api::guarded_sequence::RawSequence;
use crate::controller::error::Error;
use crate::controller::runtime::event_recorder::publish;
use crate::controller::sequence::conditions::held;
use crate::controller::sequence::context::Context;
use crate::controller::sequence::plan_source::step_problems;
use crate::controller::sequence::status_store::{refused_status, replace_status_guarded};

/// A Sequence that cannot be decoded: report it on the object itself (condition and Warning Event)
/// and wait for a change. A run already under way is held, its status kept as it is; one that
/// never started is refused. Written the same guarded way as every other status.
pub async fn refuse_undecodable(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let (Some(name), Some(namespace)) = (meta.name.clone(), meta.namespace.clone()) else {
        return Ok(Action::await_change());
    };
    let api: Api<RawSequence> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut current = api.get(&name).await?;
    let spec = current
        .spec
        .as_deref()
        .map(|raw| serde_json::from_str::<Value>(raw.get()));
    // The batch checker on the raw steps names the key path and the closest known key; serde's
    // own message is the fallback.
    let located = match spec {
        Some(Ok(spec)) => located_problems(&spec),
        _ => None,
    };
    let message = format!(
        "the Sequence cannot be read: {}",
        located.unwrap_or_else(|| invalid.error.to_string())
    );
    tracing::warn!(%message, "refusing an undecodable Sequence");
    let reference = ObjectReference {
        api_version: Some(current.api_version.clone()),
        kind: Some(current.kind.clone()),
        name: Some(name),
        namespace: Some(namespace),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };
    let status = match current.status.as_deref() {
        None => Some(Value::Null),
        Some(raw) => serde_json::from_str::<Value>(raw.get()).ok(),
    };
    // A status this controller cannot even parse is never overwritten: the Event alone says why.
    let Some(status) = status else {
        warn(ctx, &reference, &message).await;
        return Ok(Action::await_change());
    };
    let Some(status) = status_for(&status, &message, meta.generation)? else {
        return Ok(Action::await_change());
    };
    current.status =
        Some(RawValue::from_string(status.to_string()).map_err(kube::Error::SerdeError)?);
    replace_status_guarded(&api, current).await?;
    warn(ctx, &reference, &message).await;
    Ok(Action::await_change())
}

/// The status to write, or None when the stored one already says so.
fn status_for(
    status: &Value,
    message: &str,
    generation: Option<i64>,
) -> Result<Option<Value>, Error> {
    let reason = INVALID_SPEC;
    let previous: Vec<Condition> = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let new = if status.get("run").is_some() {
        let conditions = held(&previous, reason, message, generation, Timestamp::now());
        if conditions == previous {
            return Ok(None);
        }
        let mut status = status.clone();
        status["conditions"] =
            serde_json::to_value(&conditions).map_err(kube::Error::SerdeError)?;
        status
    } else {
        let refused = refused_status(&previous, reason, message, generation, false);
        if refused.conditions == previous {
            return Ok(None);
        }
        serde_json::to_value(&refused).map_err(kube::Error::SerdeError)?
    };
    Ok(Some(new))
}

/// The problems of the raw `spec.steps` as the batch checker sees them (every one, with its key
/// path and what is allowed), if it finds any.
pub fn located_problems(spec: &Value) -> Option<String> {
    let steps = spec.get("steps")?.as_array()?;
    let bodies = steps.iter().map(|step| {
        let mut body = step.clone();
        let name = body.as_object_mut().and_then(|o| o.remove("name"));
        let name = name.and_then(|n| n.as_str().map(String::from));
        (name.unwrap_or_default(), body)
    });
    let problems = step_problems(bodies);
    (!problems.is_empty()).then(|| problems.join("; "))
}

async fn warn(ctx: &Context, reference: &ObjectReference, message: &str) {
    publish(
        &ctx.recorder,
        reference,
        EventType::Warning,
        INVALID_SPEC,
        message,
    )
    .await;
}
