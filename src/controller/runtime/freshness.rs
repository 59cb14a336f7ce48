//! Keeping the controller from acting on a copy of an object older than its own last write: a
//! Sequence's or a ScheduledSequence's (each reconciler keeps its own record).
//!
//! The controller reads objects from its watch cache, which trails the API server: under load
//! by seconds. A Sequence woken (by the poller, a timer or a conflict) before the cache has caught
//! up with the status this controller just wrote would be judged from the older status, e.g. one
//! whose launch has no recorded answer yet: the engine would then rightly look the launch up
//! (ListTasks) or re-issue RunTask, work the controller already did. A ScheduledSequence judged
//! from an older status (an older `lastScheduleTime`) whose run for an occurrence is already gone
//! (history limit 0) would start that occurrence a second time. Sequence status writes carry the
//! resourceVersion as precondition, so a stale copy can never be written back.
//!
//! So the resourceVersion of each object's last write is kept, and a cached copy at any other
//! version is read fresh from the API server first (resourceVersions are opaque: "different"
//! is all that may be compared). A conflict marks the object to be read fresh as well. A
//! change by anyone else costs one such read, after which its version is the one kept.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Freshness {
    /// Object uid → what is known of its latest version.
    known: Mutex<HashMap<String, Known>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// The resourceVersion this controller last wrote or read fresh.
    Version(String),
    /// A write conflicted: whatever the cache holds may be older than the stored object.
    Conflicted,
}

impl Freshness {
    /// Whether a cached copy at `resource_version` may be acted on: it is the version this
    /// controller last wrote or read, or the controller has no record of the Sequence.
    pub fn is_current(&self, uid: Option<&str>, resource_version: Option<&str>) -> bool {
        let Some(uid) = uid else { return true };
        match self.lock().get(uid) {
            None => true,
            Some(Known::Conflicted) => false,
            Some(Known::Version(known)) => resource_version == Some(known.as_str()),
        }
    }

    /// Records the version a write returned, or a fresh read found.
    pub fn saw(&self, uid: Option<&str>, resource_version: Option<&str>) {
        if let (Some(uid), Some(version)) = (uid, resource_version) {
            self.lock()
                .insert(uid.to_owned(), Known::Version(version.to_owned()));
        }
    }

    /// A write of the Sequence conflicted: the next look reads it fresh.
    pub fn conflicted(&self, uid: Option<&str>) {
        if let Some(uid) = uid {
            self.lock().insert(uid.to_owned(), Known::Conflicted);
        }
    }

    /// The Sequence is gone (its finalizer is being removed).
    pub fn forget(&self, uid: Option<&str>) {
        if let Some(uid) = uid {
            self.lock().remove(uid);
        }
    }

    /// How many Sequences are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        // A panic while holding the lock cannot leave the map inconsistent (single inserts and
        // removes): keep using it.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_sequence_is_taken_from_the_cache() {
        let fresh = Freshness::default();
        assert!(fresh.is_current(Some("u"), Some("7")));
        assert!(fresh.is_current(None, None));
    }

    #[test]
    fn only_the_version_last_written_is_current() {
        let fresh = Freshness::default();
        fresh.saw(Some("u"), Some("10"));
        assert!(fresh.is_current(Some("u"), Some("10")));
        // Older (the cache behind) or newer (someone else's edit): either way, read fresh.
        assert!(!fresh.is_current(Some("u"), Some("9")));
        assert!(!fresh.is_current(Some("u"), Some("11")));
        assert!(!fresh.is_current(Some("u"), None));
        assert!(fresh.is_current(Some("other"), Some("9")));
        // The fresh read's version becomes the one kept.
        fresh.saw(Some("u"), Some("11"));
        assert!(fresh.is_current(Some("u"), Some("11")));
    }

    #[test]
    fn a_conflict_makes_any_cached_copy_stale_until_read_again() {
        let fresh = Freshness::default();
        fresh.saw(Some("u"), Some("10"));
        fresh.conflicted(Some("u"));
        assert!(!fresh.is_current(Some("u"), Some("10")));
        assert!(!fresh.is_current(Some("u"), Some("12")));
        fresh.saw(Some("u"), Some("12"));
        assert!(fresh.is_current(Some("u"), Some("12")));
    }

    #[test]
    fn a_deleted_sequence_is_forgotten() {
        let fresh = Freshness::default();
        fresh.saw(Some("u"), Some("10"));
        fresh.conflicted(Some("v"));
        assert_eq!(fresh.len(), 2);
        fresh.forget(Some("u"));
        fresh.forget(Some("v"));
        assert!(fresh.is_empty());
        assert!(fresh.is_current(Some("u"), Some("3")));
    }
}
