//! The API users write and read: the three custom resources of `sequencer.dev/v1alpha1`, their
//! conditions and reasons, and the labels and annotations the controller sets. A user-facing
//! field is found here; `sequencer crd` generates `crds/` from these types, and a test fails when
//! the committed files are stale.
//!
//! | file | holds |
//! |---|---|
//! | [`sequence`] | `Sequence`: spec (inline steps or a source), status, what a run pins |
//! | [`scheduled_sequence`] | `ScheduledSequence`: a schedule that creates Sequences |
//! | [`sequence_policy`] | `SequencePolicy`: what a namespace's Sequences may run, and as whom |
//! | [`conditions`] | the condition types and the reasons a refusal or hold carries |
//! | [`labels`] | labels, annotations and the finalizer |
//! | [`guarded_sequence`] | a Sequence as listed or watched, decoded or not |
//! | [`schema`] | what the CRDs' schemas share (list-map conditions, structural fixes) |
//! | [`json_text`] | status parts kept as JSON text in memory |
//!
//! May use: the core, and nothing else of this crate.

pub mod conditions;
pub mod guarded_sequence;
pub mod json_text;
pub mod labels;
pub mod scheduled_sequence;
mod schema;
pub mod sequence;
pub mod sequence_policy;
