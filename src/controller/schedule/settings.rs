//! A ScheduledSequence's settings, read and checked: the schedule, its time zone and the Sequence
//! template. A bad one is refused with the field named; nothing is created.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kube::ResourceExt;
use sequencer_core::schedule::Schedule;

use crate::api::scheduled_sequence::ScheduledSequence;
use crate::api::sequence::SequenceSpec;

/// The longest ScheduledSequence name: a run's name adds `-` and up to 10 digits of minutes.
pub const MAX_NAME: usize = 52;

pub struct Settings {
    pub schedule: Schedule,
    pub zone: TimeZone,
    pub template: SequenceSpec,
}

/// The schedule and zone, or why they are refused (naming the field).
pub fn settings_of(parent: &ScheduledSequence) -> Result<Settings, String> {
    let name = parent.name_any();
    if name.len() > MAX_NAME {
        return Err(format!(
            "metadata.name: {} characters; at most {MAX_NAME}, so that each run's name (the name, `-` and the occurrence in minutes) stays a valid name",
            name.len()
        ));
    }
    let schedule =
        Schedule::parse(&parent.spec.schedule).map_err(|e| format!("spec.schedule: {e}"))?;
    let zone = match parent.spec.time_zone.as_deref() {
        None => TimeZone::UTC,
        Some(zone) => TimeZone::get(zone).map_err(|_| {
            format!("spec.timeZone: `{zone}` is not a time zone; give an IANA name such as UTC, Europe/Berlin or America/New_York")
        })?,
    };
    let template = serde_json::from_value::<SequenceSpec>(parent.spec.template.spec.clone())
        .map_err(|e| {
            format!(
                "spec.template.{}",
                e.to_string().trim_start_matches("spec.")
            )
        })?;
    Ok(Settings {
        schedule,
        zone,
        template,
    })
}

/// RFC 3339 in the ScheduledSequence's zone (`2026-03-29T03:00:00+02:00`).
pub fn in_zone(t: Timestamp, zone: &TimeZone) -> String {
    t.to_zoned(zone.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}
