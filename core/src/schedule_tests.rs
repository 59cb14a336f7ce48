//! The scheduling rule over simulated time: unit cases for each CronJob rule and DST transition,
//! and a property test that runs a simulated controller for months with random downtime, crashes
//! between creating a run and recording it, and clock jumps.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::*;

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).expect("the test machine's tz database, or jiff's bundled one")
}

fn at(zone_name: &str, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
    date(y, mo, d)
        .at(h, mi, 0, 0)
        .to_zoned(zone(zone_name))
        .expect("a valid local time")
        .timestamp()
}

fn input<'a>(schedule: &'a Schedule, tz: &'a TimeZone, now: Timestamp) -> ScheduleInput<'a> {
    ScheduleInput {
        schedule,
        zone: tz,
        now,
        created: Timestamp::UNIX_EPOCH,
        last_scheduled: None,
        suspend: false,
        starting_deadline: None,
        policy: ConcurrencyPolicy::Forbid,
        runs: &[],
        successful_history: 3,
        failed_history: 1,
    }
}

fn run(name: &str, scheduled: Timestamp, state: RunState) -> Run {
    Run {
        name: name.into(),
        scheduled: Some(scheduled),
        created: scheduled,
        state,
    }
}

#[test]
fn schedules_are_five_fields_or_a_shorthand_and_refusals_say_what_is_allowed() {
    for good in [
        "30 2 * * *",
        "*/15 * * * 1-5",
        "0 0 1 JAN *",
        "@daily",
        "@HOURLY",
        "@midnight",
    ] {
        assert!(Schedule::parse(good).is_ok(), "{good}");
    }
    for (bad, says) in [
        ("0 30 2 * * *", "6 fields given"),
        ("30 2 * *", "4 fields given"),
        ("TZ=Europe/Berlin 30 2 * * *", "set spec.timeZone"),
        ("CRON_TZ=UTC 0 0 * * *", "set spec.timeZone"),
        ("@reboot", "unknown shorthand `@reboot`"),
        ("61 * * * *", "`61 * * * *`"),
        ("0 0 31 2 *", "never matches a real date"),
        ("", "0 fields given"),
    ] {
        let error = Schedule::parse(bad).expect_err(bad).0;
        assert!(error.contains(says), "{bad}: {error}");
    }
}

#[test]
fn a_time_skipped_by_spring_forward_runs_once_at_the_first_instant_after_the_gap() {
    // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist.
    let s = Schedule::parse("30 2 * * *").unwrap();
    let berlin = zone("Europe/Berlin");
    let day_before = at("Europe/Berlin", 2026, 3, 28, 12, 0);
    let first = s.next_after(day_before, &berlin).unwrap();
    assert_eq!(first, at("Europe/Berlin", 2026, 3, 29, 3, 0));
    let second = s.next_after(first, &berlin).unwrap();
    assert_eq!(second, at("Europe/Berlin", 2026, 3, 30, 2, 30));
}

#[test]
fn a_time_repeated_by_fall_back_runs_once() {
    // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    let s = Schedule::parse("30 2 * * *").unwrap();
    let berlin = zone("Europe/Berlin");
    let day_before = at("Europe/Berlin", 2026, 10, 24, 12, 0);
    let first = s.next_after(day_before, &berlin).unwrap();
    let second = s.next_after(first, &berlin).unwrap();
    assert_eq!(first.to_zoned(berlin.clone()).date(), date(2026, 10, 25));
    assert_eq!(second.to_zoned(berlin.clone()).date(), date(2026, 10, 26));
    // New York too (2026-11-01, 02:00 EDT becomes 01:00 EST).
    let s = Schedule::parse("30 1 * * *").unwrap();
    let new_york = zone("America/New_York");
    let first = s
        .next_after(at("America/New_York", 2026, 10, 31, 12, 0), &new_york)
        .unwrap();
    let second = s.next_after(first, &new_york).unwrap();
    assert_eq!(second.to_zoned(new_york).date(), date(2026, 11, 2));
}

#[test]
fn the_zone_decides_the_instant() {
    let s = Schedule::parse("0 2 * * *").unwrap();
    let from = Timestamp::from_second(1_790_000_000).unwrap();
    let utc = s.next_after(from, &TimeZone::UTC).unwrap();
    let kolkata = s.next_after(from, &zone("Asia/Kolkata")).unwrap();
    assert_ne!(utc, kolkata);
    assert_eq!(kolkata.to_zoned(zone("Asia/Kolkata")).hour(), 2);
}

#[test]
fn missed_occurrences_start_only_the_most_recent_and_many_are_reported() {
    let utc = TimeZone::UTC;
    let s = Schedule::parse("0 1 * * *").unwrap();
    let now = at("UTC", 2026, 6, 10, 12, 0);
    let mut i = input(&s, &utc, now);
    i.last_scheduled = Some(at("UTC", 2026, 6, 7, 1, 0));
    let d = decide(&i);
    assert_eq!(d.start, Some(at("UTC", 2026, 6, 10, 1, 0)));
    assert_eq!(d.many_missed, None);
    assert_eq!(d.next, Some(at("UTC", 2026, 6, 11, 1, 0)));

    let every_minute = Schedule::parse("* * * * *").unwrap();
    let mut i = input(&every_minute, &utc, now);
    i.last_scheduled = Some(at("UTC", 2026, 6, 8, 12, 0));
    let d = decide(&i);
    assert_eq!(d.start, Some(now), "the latest occurrence still runs");
    assert!(d.many_missed.is_some_and(|n| n > MANY_MISSED), "{d:?}");
}

#[test]
fn nothing_before_the_creation_runs_and_nothing_runs_twice() {
    let utc = TimeZone::UTC;
    let s = Schedule::parse("0 1 * * *").unwrap();
    let now = at("UTC", 2026, 6, 10, 12, 0);
    let mut i = input(&s, &utc, now);
    i.created = at("UTC", 2026, 6, 10, 2, 0);
    assert_eq!(decide(&i).start, None, "created after today's 01:00");

    // The run for today exists but the status did not record it (a crash in between).
    i.created = Timestamp::UNIX_EPOCH;
    let today = at("UTC", 2026, 6, 10, 1, 0);
    let runs = [run("n-1", today, RunState::Succeeded)];
    i.runs = &runs;
    i.last_scheduled = Some(at("UTC", 2026, 6, 9, 1, 0));
    let d = decide(&i);
    assert_eq!(d.start, None);
    assert_eq!(d.already_started, Some(today));
}

#[test]
fn a_starting_deadline_skips_late_occurrences() {
    let utc = TimeZone::UTC;
    let s = Schedule::parse("0 1 * * *").unwrap();
    let mut i = input(&s, &utc, at("UTC", 2026, 6, 10, 1, 10));
    i.last_scheduled = Some(at("UTC", 2026, 6, 9, 1, 0));
    i.starting_deadline = Some(SignedDuration::from_secs(300));
    assert_eq!(decide(&i).start, None, "10 minutes late, 5 allowed");
    i.starting_deadline = Some(SignedDuration::from_secs(900));
    assert_eq!(decide(&i).start, Some(at("UTC", 2026, 6, 10, 1, 0)));
}

#[test]
fn forbid_skips_replace_stops_first_allow_overlaps() {
    let utc = TimeZone::UTC;
    let s = Schedule::parse("0 * * * *").unwrap();
    let now = at("UTC", 2026, 6, 10, 12, 0);
    let last = at("UTC", 2026, 6, 10, 11, 0);
    let runs = [run("n-a", last, RunState::Active)];
    let mut i = input(&s, &utc, now);
    i.last_scheduled = Some(last);
    i.runs = &runs;

    i.policy = ConcurrencyPolicy::Forbid;
    let d = decide(&i);
    assert_eq!(
        (d.start, d.skipped),
        (None, Some(Skipped::AlreadyActive(now)))
    );

    i.policy = ConcurrencyPolicy::Replace;
    let d = decide(&i);
    assert_eq!(d.start, None);
    assert_eq!(d.stop, vec!["n-a".to_owned()]);
    assert_eq!(d.wake_at, now.checked_add(REPLACE_RECHECK).ok());
    let deleting = [run("n-a", last, RunState::Deleting)];
    i.runs = &deleting;
    let d = decide(&i);
    assert_eq!((d.start, d.stop.len()), (None, 0), "waits until it is gone");
    i.runs = &[];
    assert_eq!(decide(&i).start, Some(now));

    i.policy = ConcurrencyPolicy::Allow;
    i.runs = &runs;
    assert_eq!(decide(&i).start, Some(now));
}

#[test]
fn suspended_starts_nothing_and_history_keeps_the_newest() {
    let utc = TimeZone::UTC;
    let s = Schedule::parse("0 * * * *").unwrap();
    let now = at("UTC", 2026, 6, 10, 12, 0);
    let h = |n: i8| at("UTC", 2026, 6, 10, n, 0);
    let runs = [
        run("s1", h(1), RunState::Succeeded),
        run("s5", h(5), RunState::Succeeded),
        run("s2", h(2), RunState::Succeeded),
        run("s4", h(4), RunState::Succeeded),
        run("s3", h(3), RunState::Succeeded),
        run("f6", h(6), RunState::Failed),
        run("f7", h(7), RunState::Failed),
        run("a8", h(8), RunState::Active),
    ];
    let mut i = input(&s, &utc, now);
    i.runs = &runs;
    i.suspend = true;
    i.last_scheduled = Some(h(8));
    let d = decide(&i);
    assert_eq!(d.start, None);
    assert_eq!(d.delete, vec!["s1", "s2", "f6"]);
    assert_eq!(d.next, Some(h(13)));
}

#[test]
fn run_names_follow_the_occurrence_minute() {
    let t = Timestamp::from_second(1_789_999_980).unwrap();
    assert_eq!(run_name("nightly", t), "nightly-29833333");
    assert_eq!(
        run_name(
            "nightly",
            t.checked_add(SignedDuration::from_secs(59)).unwrap()
        ),
        run_name("nightly", t)
    );
}

const SCHEDULES: &[&str] = &[
    "0 * * * *",
    "30 2 * * *",
    "0 1,13 * * 1-5",
    "*/20 * * * *",
    "0 0 1 * *",
    "15 3 * * 0",
];
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
];

/// What one reconcile of the simulation does after deciding.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// Looks again at the time asked, plus a few seconds.
    OnTime(u8),
    /// The controller is down for this many hours.
    Down(u8),
    /// Creates the run, then crashes before recording it.
    CrashAfterCreate,
    /// The clock steps back this many minutes.
    ClockBack(u8),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            8 => any::<u8>().prop_map(Step::OnTime),
            1 => (1u8..72).prop_map(Step::Down),
            1 => Just(Step::CrashAfterCreate),
            1 => (1u8..90).prop_map(Step::ClockBack),
        ],
        1..64,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Months of simulated time: every run is a real occurrence, no occurrence runs twice (across
    /// crashes between creating a run and recording it, downtime and clock jumps), a downtime
    /// starts at most one of the occurrences it missed, and while the controller keeps up no
    /// occurrence is lost.
    #[test]
    fn each_occurrence_runs_at_most_once_and_none_is_lost_while_up(
        schedule in 0..SCHEDULES.len(),
        zone_index in 0..ZONES.len(),
        start in 1_767_225_600i64..1_830_000_000,
        policy in prop_oneof![Just(ConcurrencyPolicy::Allow), Just(ConcurrencyPolicy::Forbid), Just(ConcurrencyPolicy::Replace)],
        script in steps(),
    ) {
        let s = Schedule::parse(SCHEDULES[schedule]).unwrap();
        let tz = zone(ZONES[zone_index]);
        let created = Timestamp::from_second(start).unwrap();
        let end = created.checked_add(SignedDuration::from_hours(24 * 60)).unwrap();
        let mut now = created;
        let mut last: Option<Timestamp> = None;
        let mut runs: Vec<Run> = Vec::new();
        // Occurrence started → the reconcile (its index) that started it.
        let mut started = BTreeMap::new();
        let mut downtimes: Vec<(Timestamp, Timestamp, usize)> = Vec::new();
        let mut latest_now = now;
        for (index, step) in script.iter().cycle().take(2000).enumerate() {
            let d = decide(&ScheduleInput {
                schedule: &s, zone: &tz, now, created, last_scheduled: last, suspend: false,
                starting_deadline: None, policy, runs: &runs,
                successful_history: 3, failed_history: 1,
            });
            if let Some(t) = d.start {
                prop_assert!(started.insert(t, index).is_none(), "{t} started twice");
                prop_assert!(t <= now && t > created);
                prop_assert_eq!(s.next_after(t.checked_sub(SignedDuration::from_secs(1)).unwrap(), &tz), Some(t), "not an occurrence");
                runs.push(Run { name: run_name("n", t), scheduled: Some(t), created: now, state: RunState::Active });
                if !matches!(step, Step::CrashAfterCreate) {
                    last = Some(t);
                }
            } else if let Some(t) = d.already_started {
                last = last.max(Some(t));
            }
            runs.retain(|r| !(d.delete.contains(&r.name) || d.stop.contains(&r.name) || r.state == RunState::Deleting));
            for r in &mut runs {
                // Runs take a few minutes; odd minutes fail.
                if r.state == RunState::Active && now.duration_since(r.created) > SignedDuration::from_mins(5) {
                    r.state = if r.created.as_second() / 60 % 2 == 0 { RunState::Succeeded } else { RunState::Failed };
                }
            }
            let wake = d.wake_at.unwrap_or(now).max(now);
            now = match step {
                Step::OnTime(extra) => wake.checked_add(SignedDuration::from_secs(i64::from(*extra % 30))).unwrap(),
                Step::Down(hours) => {
                    let back = now.checked_add(SignedDuration::from_hours(i64::from(*hours))).unwrap();
                    downtimes.push((now, back, index));
                    back
                }
                Step::CrashAfterCreate => now.checked_add(SignedDuration::from_secs(3)).unwrap(),
                Step::ClockBack(minutes) => now.checked_sub(SignedDuration::from_mins(i64::from(*minutes))).unwrap(),
            };
            latest_now = latest_now.max(now);
            if now > end {
                break;
            }
        }
        // Of the occurrences a downtime missed, at most one starts afterwards (no backlog). A
        // clock stepping back into a downtime makes its later occurrences due again on time, so
        // this holds for scripts without clock jumps (the ones above check those).
        let clock_jumps = script.iter().any(|s| matches!(s, Step::ClockBack(_)));
        for (down, back, went_down) in downtimes.iter().filter(|_| !clock_jumps) {
            let inside = started
                .iter()
                .filter(|(t, by)| *t > down && *t <= back && *by > went_down)
                .count();
            prop_assert!(inside <= 1, "{inside} runs for the downtime {down}..{back}: {started:?}");
        }
        // With Allow, every occurrence outside downtime (and not in the last half hour, which the
        // simulation may not have reached) was started.
        if policy == ConcurrencyPolicy::Allow {
            let horizon = latest_now.checked_sub(SignedDuration::from_mins(30)).unwrap();
            let mut cursor = created;
            while let Some(t) = s.next_after(cursor, &tz) {
                if t > horizon {
                    break;
                }
                let during_downtime = downtimes.iter().any(|(down, back, _)| t > *down && t <= *back);
                prop_assert!(during_downtime || started.contains_key(&t), "{t} was lost");
                cursor = t;
            }
        }
    }
}

const SLOW_SCHEDULES: &[&str] = &[
    "30 2 * * *",
    "0 3 * * 0",
    "15 1 1 * *",
    "@yearly",
    "0 2 29 2 *",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Three years of daily, weekly, monthly and yearly schedules, waking exactly when asked:
    /// every occurrence runs once, each on a day of the schedule, through every DST change of
    /// the zone (Lord Howe shifts by 30 minutes).
    #[test]
    fn over_years_every_occurrence_runs_exactly_once(
        schedule in 0..SLOW_SCHEDULES.len(),
        zone_index in 0..ZONES.len(),
        start in 1_767_225_600i64..1_830_000_000,
    ) {
        let s = Schedule::parse(SLOW_SCHEDULES[schedule]).unwrap();
        let tz = zone(ZONES[zone_index]);
        let created = Timestamp::from_second(start).unwrap();
        let end = created.checked_add(SignedDuration::from_hours(24 * 366 * 3)).unwrap();
        let mut now = created;
        let mut last = None;
        let mut started = Vec::new();
        while now < end {
            let d = decide(&ScheduleInput {
                schedule: &s, zone: &tz, now, created, last_scheduled: last, suspend: false,
                starting_deadline: Some(SignedDuration::from_secs(600)),
                policy: ConcurrencyPolicy::Forbid, runs: &[],
                successful_history: 3, failed_history: 1,
            });
            if let Some(t) = d.start {
                prop_assert!(started.last().is_none_or(|p| *p < t));
                started.push(t);
                last = Some(t);
            }
            prop_assert!(d.skipped.is_none(), "{:?} at {now}", d.skipped);
            now = d.wake_at.expect("a next occurrence");
        }
        let mut expected = Vec::new();
        let mut cursor = created;
        while let Some(t) = s.next_after(cursor, &tz) {
            if t >= end {
                break;
            }
            expected.push(t);
            cursor = t;
        }
        prop_assert_eq!(&started[..], &expected[..expected.len().min(started.len())]);
        prop_assert!(expected.len() - started.len() <= 1);
        let wall: BTreeSet<jiff::civil::Date> =
            started.iter().map(|t| t.to_zoned(tz.clone()).date()).collect();
        prop_assert_eq!(wall.len(), started.len(), "two runs on one local day");
    }
}
