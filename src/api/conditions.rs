//! The conditions of the three resources and the reasons they carry: the contract for `kubectl
//! wait` and for tools (Argo CD, alerts). `phase` is for display; these are what to rely on.
//!
//! A Sequence's:
//!
//! - `Running`: a step is in progress.
//! - `Complete`: every step is done (failures under `ignoreFailure` included).
//! - `Failed`: the run failed; the reason says how (the failing step's reason, `DeadlineExceeded`,
//!   `InvalidSpec`, `SourceError`, `PolicyDenied`, `Cancelled`).
//! - `Suspended`: `spec.suspend` holds back the next step.
//! - `SpecChanged`: `spec.steps`, `spec.source` or `spec.region` changed after the run started;
//!   the run goes on with the plan pinned at its start.
//!
//! - `Held`: the controller cannot continue the run from what `.status` says (a status it cannot
//!   read, e.g. written by a newer version or edited by hand; a run that does not fit its plan).
//!   It launches nothing and overwrites nothing until the status reads again; the reason is
//!   `StatusUnreadable` or `InvalidSpec`, the message names the field. Also `PolicyDenied`: a
//!   SequencePolicy forbids the next launch of a started run, whose running tasks are followed.
//!
//! A ScheduledSequence's: `Ready` (it can schedule; `InvalidSpec` when it cannot) and
//! `Suspended`.
//!
//! A condition's `lastTransitionTime` changes only when its status does.

/// A Sequence's condition types.
pub const RUNNING: &str = "Running";
pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";
pub const SPEC_CHANGED: &str = "SpecChanged";
pub const HELD: &str = "Held";

/// A ScheduledSequence's condition types: it can schedule (`Ready`), and `spec.suspend`.
pub const READY: &str = "Ready";

/// Why a run cannot start, or is held: the spec (or a step in it) is not valid.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// The batch file the spec names cannot be read (S3, ConfigMap, git).
pub const SOURCE_ERROR: &str = "SourceError";
/// A SequencePolicy does not allow the run, or its next launch.
pub const POLICY_DENIED: &str = "PolicyDenied";
/// `status.plan` cannot be read back.
pub const INVALID_STATUS: &str = "InvalidStatus";
/// `.status` cannot be read back as a run (the run is held, nothing is overwritten).
pub const STATUS_UNREADABLE: &str = "StatusUnreadable";
