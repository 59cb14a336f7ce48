//! Clusters whose last DescribeTasks failed, left alone for a while: how many times in a row, and
//! the poller round before which they rest (1 s doubling to 60 s, jittered into its upper half so
//! that many controllers do not retry in step). A failed call never fails a step by itself.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::controller::tasks::owner::ClusterKey;

#[derive(Default)]
pub struct ClusterBackoff {
    /// Failures in a row, and the round before which the cluster rests.
    failing: Mutex<HashMap<ClusterKey, (u32, u64)>>,
}

impl ClusterBackoff {
    /// Clusters resting at round `now`.
    pub fn resting(&self, now: u64) -> Vec<ClusterKey> {
        self.lock()
            .iter()
            .filter(|(_, (_, not_before))| *not_before > now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Records a failed call for `key` at round `now`; returns the seconds it now rests.
    pub fn failed(&self, key: &ClusterKey, now: u64) -> u64 {
        let mut failing = self.lock();
        let entry = failing.entry(key.clone()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let seed = format!("{}/{:?}/{}/{now}", key.region, key.cluster, entry.0);
        let rest = sequencer_core::backoff::api_error_delay(entry.0, &seed)
            .as_secs_f64()
            .ceil() as u64;
        entry.1 = now + rest.max(1);
        rest.max(1)
    }

    /// A call for `key` succeeded: it rests no more.
    pub fn succeeded(&self, key: &ClusterKey) {
        self.lock().remove(key);
    }

    /// Failures in a row and the round before which `key` rests, if it failed last.
    pub fn state(&self, key: &ClusterKey) -> Option<(u32, u64)> {
        self.lock().get(key).copied()
    }

    /// Sets `key`'s state, as if it had failed `failures` times and rested until `not_before`.
    #[cfg(test)]
    pub fn set(&self, key: &ClusterKey, failures: u32, not_before: u64) {
        self.lock().insert(key.clone(), (failures, not_before));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterKey, (u32, u64)>> {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ClusterKey {
        ClusterKey {
            region: "us-east-1".into(),
            cluster: Some("etl".into()),
            role: None,
        }
    }

    #[test]
    fn rests_grow_from_one_second_to_a_minute() {
        let backoff = ClusterBackoff::default();
        let rests: Vec<u64> = (0..10).map(|_| backoff.failed(&key(), 0)).collect();
        for (n, rest) in rests.iter().enumerate() {
            let full = (1u64 << n.min(6)).min(60);
            assert!(
                *rest >= (full / 2).max(1) && *rest <= full,
                "failure {}: {rest} s",
                n + 1
            );
        }
        assert!(rests[9] >= 30);
    }

    #[test]
    fn a_cluster_rests_until_its_time_and_a_success_ends_the_rest() {
        let backoff = ClusterBackoff::default();
        assert!(backoff.resting(0).is_empty());
        let rest = backoff.failed(&key(), 10);
        assert_eq!(backoff.resting(10), vec![key()]);
        assert!(backoff.resting(10 + rest).is_empty(), "rested {rest} s");
        backoff.failed(&key(), 20);
        assert_eq!(backoff.state(&key()).map(|(n, _)| n), Some(2));
        backoff.succeeded(&key());
        assert_eq!(backoff.state(&key()), None);
        assert!(backoff.resting(20).is_empty());
    }
}
