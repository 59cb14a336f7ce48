//! Why a Sequence's run cannot start, as every source and check reports it.

/// Why a Sequence cannot run: a condition reason (`InvalidSpec`, `SourceError`, `PolicyDenied`,
/// `InvalidStatus`) and a message naming the place.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}
