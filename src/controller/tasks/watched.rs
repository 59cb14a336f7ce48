//! One task the poller watches: what is known of it, which Sequences want it, and when it is next
//! described. How that changes on a registration, a pushed hint and an answer is decided here;
//! the poller only holds the tasks, batches the calls and wakes the owners this returns.

use std::collections::HashMap;

use jiff::Timestamp;
use sequencer_core::status::TaskRecord;

use crate::controller::tasks::hint::{Hint, TaskChange};
use crate::controller::tasks::owner::Owner;

/// How often, and how many seconds apart, a task an event said stopped is described again while
/// DescribeTasks does not say so yet.
const STOP_RECHECKS: u8 = 5;
const STOP_RECHECK_SECONDS: u64 = 2;

#[derive(Clone, Debug, PartialEq)]
pub enum Known {
    Task(Box<TaskRecord>),
    /// ECS answered MISSING, at this time (last asked). The time travels with the answer so that
    /// an early MISSING served late, after a run of failed polls, is never taken for a lost task.
    Missing(Timestamp),
}

pub struct Watched {
    /// Per Sequence: its poll interval in seconds, and whether it has been answered since the
    /// task last changed.
    owners: HashMap<Owner, Interest>,
    known: Option<Known>,
    /// The poller round (seconds since it started) at which the ARN is next described.
    pub next_due: u64,
    /// The latest `detail.version` a pushed task event announced (see `task_events`).
    hinted_version: Option<i64>,
    /// A pushed event said the task stopped but DescribeTasks does not say so yet (ECS is
    /// eventually consistent): it is described again this many more times, 2 s apart.
    stop_rechecks: u8,
    /// Named by a pushed event and not described since: goes before the rest of a round.
    pub urgent: bool,
}

struct Interest {
    interval: u64,
    delivered: bool,
}

impl Watched {
    /// A task first registered at round `now`: due at once.
    pub fn new(now: u64) -> Self {
        Watched {
            owners: HashMap::new(),
            known: None,
            next_due: now,
            hinted_version: None,
            stop_rechecks: 0,
            urgent: false,
        }
    }

    /// `owner` wants this task every `interval` seconds; what is known of it so far, now
    /// delivered to `owner`.
    pub fn register(&mut self, owner: &Owner, interval: u64) -> Option<&Known> {
        let interest = self.owners.entry(owner.clone()).or_insert(Interest {
            interval: interval.max(1),
            delivered: false,
        });
        interest.interval = interval.max(1);
        if self.known.is_some() {
            interest.delivered = true;
        }
        self.known.as_ref()
    }

    /// `owner` no longer wants the task; true when nobody does.
    pub fn release(&mut self, owner: &Owner) -> bool {
        self.owners.remove(owner);
        self.owners.is_empty()
    }

    /// A pushed change: due at once unless it repeats what is known.
    pub fn hint(&mut self, change: &TaskChange, now: u64) -> Hint {
        let seen = match (change.version, self.hinted_version) {
            (Some(version), Some(latest)) => version <= latest,
            _ => false,
        };
        if self.stopped() || seen {
            return Hint::Duplicate;
        }
        if change.version.is_some() {
            self.hinted_version = change.version;
        }
        if change.last_status.as_deref() == Some("STOPPED") {
            self.stop_rechecks = STOP_RECHECKS;
        }
        self.next_due = now;
        self.urgent = true;
        Hint::Described
    }

    /// What a DescribeTasks at round `now` said of the task (`None`: nothing, it was not in the
    /// answer); returns the owners to wake because it changed.
    pub fn record(&mut self, answer: Option<Known>, now: u64, floor: u64) -> Vec<Owner> {
        self.postpone(now, floor);
        self.urgent = false;
        let stopped = matches!(&answer, Some(Known::Task(t)) if t.is_finished());
        if stopped {
            self.stop_rechecks = 0;
        } else if self.stop_rechecks > 0 {
            self.stop_rechecks -= 1;
            self.next_due = self.next_due.min(now + STOP_RECHECK_SECONDS);
        }
        let Some(known) = answer else {
            return Vec::new();
        };
        // Another MISSING only refreshes its time: the Sequence's grace timer looks again.
        if let (Some(Known::Missing(_)), Known::Missing(_)) = (&self.known, &known) {
            self.known = Some(known);
            return Vec::new();
        }
        if self.known.as_ref() == Some(&known) {
            return Vec::new();
        }
        self.known = Some(known);
        self.owners
            .iter_mut()
            .map(|(owner, interest)| {
                interest.delivered = false;
                owner.clone()
            })
            .collect()
    }

    /// Not described at round `now` (the call failed): due again at its next interval.
    pub fn postpone(&mut self, now: u64, floor: u64) {
        let interval = self.interval(floor);
        self.next_due = (now / interval + 1) * interval;
    }

    /// Whether the task is known to have stopped.
    pub fn stopped(&self) -> bool {
        matches!(&self.known, Some(Known::Task(t)) if t.is_finished())
    }

    /// Seconds between two descriptions: the shortest its Sequences ask for, but with push
    /// updates at least the safety-net interval.
    fn interval(&self, floor: u64) -> u64 {
        self.owners
            .values()
            .map(|i| i.interval)
            .min()
            .unwrap_or(1)
            .max(floor)
            .max(1)
    }

    /// A stopped task never changes again; once every Sequence watching it has seen that, the
    /// poller can forget it (a Sequence that asks again simply registers it anew).
    pub fn done(&self) -> bool {
        self.stopped() && self.owners.values().all(|i| i.delivered)
    }
}
