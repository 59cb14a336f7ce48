//! The labels, annotations and finalizer the controller puts on objects or reads from them: part
//! of the API as much as the fields are (users select, annotate and alert on them).

/// The finalizer that makes a deleted Sequence stop its tasks first.
pub const FINALIZER: &str = "sequencer.dev/stop-tasks";

/// The label that names a Sequence's or a ScheduledSequence's shard.
pub const SHARD_LABEL: &str = "sequencer.dev/shard";

/// The label on each run naming its ScheduledSequence.
pub const SCHEDULED_BY: &str = "sequencer.dev/scheduled-sequence";
/// The annotation on each run: the occurrence it was started for (RFC 3339, in the zone).
pub const SCHEDULED_AT: &str = "sequencer.dev/scheduled-at";

/// The annotation asking for a run now (`sequencer trigger`, or `kubectl annotate`): any new value
/// starts one run, named after the value, whatever the schedule and the concurrency policy (as
/// `kubectl create job --from=cronjob/...` does).
pub const RUN_NOW: &str = "sequencer.dev/run-now";
/// The annotation on a manual run: the request it answers.
pub const MANUAL: &str = "sequencer.dev/manual";
