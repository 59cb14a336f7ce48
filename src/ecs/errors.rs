//! What a failed ECS call means for the protocol. An error is *definite* only when ECS has said
//! that it refused the request (a documented client error such as `InvalidParameterException`):
//! then nothing was done. Everything else — throttling, any 5xx, a timeout, a reset connection, an
//! answer that could not be read, an error code this list does not know — leaves the outcome
//! unknown: a RunTask may have started tasks although its answer was lost. Such errors are
//! `transient`: the engine never judges a step by them; it waits, looks the launch up by its
//! startedBy and re-issues it only with the same clientToken.

use aws_sdk_ecs::config::http::HttpResponse;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use sequencer_core::observation::ApiError;

/// The client errors the ECS API reference documents (for RunTask, ListTasks, DescribeTasks,
/// StopTask, DescribeTaskDefinition): ECS refused the request and did nothing.
const REFUSALS: &[&str] = &[
    "AccessDeniedException",
    "BlockedException",
    "ClientException",
    "ClusterNotFoundException",
    "ConflictException",
    "InvalidParameterException",
    "PlatformTaskDefinitionIncompatibilityException",
    "PlatformUnknownException",
    "ServiceNotActiveException",
    "ServiceNotFoundException",
    "UnsupportedFeatureException",
    // Signing and identity: the request was rejected before ECS looked at it.
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
];

/// Classifies an SDK error: by the SDK's error kind, then by the HTTP status, and only for a 4xx
/// answer by its code. The SDK has already retried what it retries (with backoff).
pub fn api_error<E>(err: SdkError<E, HttpResponse>) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = error_chain(&err);
    let unknown = |code: &str, message: String| ApiError {
        transient: true,
        code: code.into(),
        message,
    };
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let status = service.raw().status().as_u16();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().map(Into::into).unwrap_or(detail);
            let definite =
                (400..500).contains(&status) && status != 429 && REFUSALS.contains(&code.as_str());
            ApiError {
                transient: !definite,
                code,
                message,
            }
        }
        SdkError::TimeoutError(_) => unknown("Timeout", detail),
        SdkError::DispatchFailure(_) => unknown("DispatchFailure", detail),
        // A response that could not be read (e.g. an HTML 5xx page from a proxy).
        SdkError::ResponseError(_) => unknown("ResponseError", detail),
        // The request could not be built or signed: it never left this process, so nothing was
        // done, and sending it again would fail the same way.
        SdkError::ConstructionFailure(_) => ApiError {
            transient: false,
            code: "RequestNotSent".into(),
            message: detail,
        },
        _ => unknown("Unknown", detail),
    }
}

/// "outer: inner: innermost", since SDK errors keep the useful part in their sources.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
