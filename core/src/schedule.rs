//! When a `ScheduledSequence` starts a run: the pure rule (schedule, time zone, what was scheduled
//! last, now, the concurrency policy and the runs that exist → what to start, stop and delete, and
//! when to look again). No clock: `now` is given. No time zone database: the zone is given.
//!
//! The semantics are Kubernetes CronJob's (v2 controller), with its traps closed:
//! - only the most recent missed occurrence runs, never a backlog; more than 100 missed ones are
//!   reported (`many_missed`) and the latest still runs;
//! - with a starting deadline, an occurrence later than that is skipped (reported), and missed ones
//!   are looked for only within the deadline;
//! - an occurrence already started (a run carrying its time exists, or it is the last one
//!   recorded) is never started again, so a crash or a double reconcile cannot run it twice;
//! - `Forbid` skips while a run is active (the occurrence stays due: if the active run ends within
//!   the deadline, it starts then, late), `Replace` stops the active runs and starts once they are
//!   gone, `Allow` starts regardless;
//! - daylight saving: a wall-clock time skipped by a spring-forward runs once, at the first instant
//!   after the gap; a wall-clock time repeated by a fall-back runs once (croner's rules for
//!   fixed-time fields; interval patterns such as `*/15` keep their real-time spacing).

use std::fmt;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// More missed occurrences than this are reported as many (CronJob's limit).
pub const MANY_MISSED: u64 = 100;

/// A parsed `spec.schedule`: five fields (minute hour day-of-month month day-of-week) or one of
/// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` (`@annually`, `@midnight`).
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
}

/// Why a schedule text is refused, in words for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScheduleError {}

const SHORTHANDS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];
const EXPECTED: &str = "expected five fields (minute hour day-of-month month day-of-week, e.g. `30 2 * * *`) or one of @hourly, @daily, @weekly, @monthly, @yearly";

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        let upper = text.to_ascii_uppercase();
        if upper.starts_with("TZ=") || upper.starts_with("CRON_TZ=") {
            return Err(ScheduleError(
                "a time zone inside the schedule is not supported: set spec.timeZone (an IANA name such as Europe/Berlin)".into(),
            ));
        }
        let text = if text.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            text
        };
        if text.starts_with('@') && !SHORTHANDS.iter().any(|s| s.eq_ignore_ascii_case(text)) {
            return Err(ScheduleError(format!(
                "unknown shorthand `{text}`; {EXPECTED}"
            )));
        }
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && fields != 5 {
            return Err(ScheduleError(format!("{fields} fields given; {EXPECTED}")));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(text)
            .map_err(|e| ScheduleError(format!("`{text}`: {e}; {EXPECTED}")))?;
        // A pattern that never matches (31 February) would make every search fail later.
        let probe = Timestamp::UNIX_EPOCH.to_zoned(TimeZone::UTC);
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(ScheduleError(format!("`{text}` never matches a real date")));
        }
        Ok(Schedule { cron })
    }

    /// The first occurrence strictly after `after`, in `zone`.
    pub fn next_after(&self, after: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(zone.clone());
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|z| z.timestamp())
    }

    /// The last occurrence at or before `at`, in `zone`.
    pub fn last_at_or_before(&self, at: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
        let start = at.to_zoned(zone.clone());
        self.cron
            .find_previous_occurrence(&start, true)
            .ok()
            .map(|z| z.timestamp())
    }
}

/// What the user chose for overlapping runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConcurrencyPolicy {
    Allow,
    #[default]
    Forbid,
    Replace,
}

/// A run (a child Sequence) as the rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub name: String,
    /// The occurrence it was started for; `None` for a manual run.
    pub scheduled: Option<Timestamp>,
    /// When it was created (orders the history).
    pub created: Timestamp,
    pub state: RunState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Active,
    /// Being deleted (its tasks are being stopped by the Sequence's finalizer).
    Deleting,
    Succeeded,
    Failed,
}

impl RunState {
    fn is_active(self) -> bool {
        matches!(self, RunState::Active | RunState::Deleting)
    }
}

/// Everything the rule looks at.
#[derive(Clone, Debug)]
pub struct ScheduleInput<'a> {
    pub schedule: &'a Schedule,
    pub zone: &'a TimeZone,
    pub now: Timestamp,
    /// When the ScheduledSequence was created: before anything was started, occurrences before
    /// it never run.
    pub created: Timestamp,
    /// The last occurrence started (`status.lastScheduleTime`).
    pub last_scheduled: Option<Timestamp>,
    pub suspend: bool,
    pub starting_deadline: Option<SignedDuration>,
    pub policy: ConcurrencyPolicy,
    pub runs: &'a [Run],
    pub successful_history: usize,
    pub failed_history: usize,
}

/// An occurrence that was due and was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// `Forbid`, and a run is active.
    AlreadyActive(Timestamp),
    /// Later than the starting deadline.
    TooLate(Timestamp),
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleDecision {
    /// Start the run of this occurrence (then record it as the last scheduled).
    pub start: Option<Timestamp>,
    /// The latest occurrence known to be started already (to record, if the status lags).
    pub already_started: Option<Timestamp>,
    /// `Replace`: delete these active runs first; the occurrence starts once they are gone.
    pub stop: Vec<String>,
    pub skipped: Option<Skipped>,
    /// How many occurrences were missed, when more than [`MANY_MISSED`].
    pub many_missed: Option<u64>,
    /// Finished runs beyond the history limits, oldest first.
    pub delete: Vec<String>,
    /// The next occurrence after now (`status.nextScheduleTime`).
    pub next: Option<Timestamp>,
    /// When to look again (the next occurrence, or soon while a `Replace` waits).
    pub wake_at: Option<Timestamp>,
}

/// How long a `Replace` waits between two looks at the runs it stopped.
pub const REPLACE_RECHECK: SignedDuration = SignedDuration::from_secs(2);

pub fn decide(input: &ScheduleInput<'_>) -> ScheduleDecision {
    let mut decision = ScheduleDecision {
        delete: beyond_history(input),
        next: input.schedule.next_after(input.now, input.zone),
        ..ScheduleDecision::default()
    };
    decision.wake_at = decision.next;
    if input.suspend {
        return decision;
    }
    // Occurrences already covered: the last recorded one, and any a run exists for (a run
    // created just before a crash that kept the status from recording it).
    let started_latest = input
        .runs
        .iter()
        .filter_map(|r| r.scheduled)
        .chain(input.last_scheduled)
        .max();
    // As CronJob: from the last occurrence started, else from the creation.
    let covered_until = started_latest.unwrap_or(input.created);
    let Some((due, missed)) = most_recent_due(input, covered_until) else {
        decision.already_started = started_latest;
        return decision;
    };
    if missed > MANY_MISSED {
        decision.many_missed = Some(missed);
    }
    if let Some(deadline) = input.starting_deadline
        && due
            .checked_add(deadline)
            .is_ok_and(|limit| limit < input.now)
    {
        decision.skipped = Some(Skipped::TooLate(due));
        return decision;
    }
    let active: Vec<&Run> = input.runs.iter().filter(|r| r.state.is_active()).collect();
    match input.policy {
        ConcurrencyPolicy::Forbid if !active.is_empty() => {
            decision.skipped = Some(Skipped::AlreadyActive(due));
        }
        ConcurrencyPolicy::Replace if !active.is_empty() => {
            decision.stop = active
                .iter()
                .filter(|r| r.state == RunState::Active)
                .map(|r| r.name.clone())
                .collect();
            decision.wake_at = input.now.checked_add(REPLACE_RECHECK).ok();
        }
        _ => decision.start = Some(due),
    }
    decision
}

/// The most recent occurrence in (`after`, now] (within the starting deadline when one is set),
/// and how many occurrences that window holds (counted up to [`MANY_MISSED`] + 1).
fn most_recent_due(input: &ScheduleInput<'_>, after: Timestamp) -> Option<(Timestamp, u64)> {
    let window_start = match input.starting_deadline {
        Some(deadline) => input
            .now
            .checked_sub(deadline)
            .map_or(after, |t| t.max(after)),
        None => after,
    };
    let mut count = 0;
    let mut latest = None;
    let mut cursor = window_start;
    while let Some(t) = input.schedule.next_after(cursor, input.zone) {
        if t > input.now {
            return latest.map(|l| (l, count));
        }
        count += 1;
        latest = Some(t);
        cursor = t;
        if count > MANY_MISSED {
            // Many missed: the latest is found from now backwards, not by walking them all.
            let last = input.schedule.last_at_or_before(input.now, input.zone)?;
            return Some((last.max(t), count));
        }
    }
    latest.map(|l| (l, count))
}

/// Finished runs beyond the limits: the oldest successful ones past `successful_history`, the
/// oldest failed ones past `failed_history`.
fn beyond_history(input: &ScheduleInput<'_>) -> Vec<String> {
    let mut delete = Vec::new();
    for (state, keep) in [
        (RunState::Succeeded, input.successful_history),
        (RunState::Failed, input.failed_history),
    ] {
        let mut finished: Vec<&Run> = input.runs.iter().filter(|r| r.state == state).collect();
        finished.sort_by_key(|r| (r.scheduled.unwrap_or(r.created), r.created));
        let excess = finished.len().saturating_sub(keep);
        delete.extend(finished[..excess].iter().map(|r| r.name.clone()));
    }
    delete
}

/// The child Sequence's name for an occurrence: the parent's name and the occurrence in Unix
/// minutes, so that two reconciles of one occurrence name the same object.
pub fn run_name(parent: &str, occurrence: Timestamp) -> String {
    format!("{parent}-{}", occurrence.as_second().div_euclid(60))
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
