//! How fast, and how many at once, calls go out to AWS. ECS throttles each account per region
//! with a token bucket per kind of call (a burst, then a sustained rate); past it every call
//! answers ThrottlingException and is retried, so a burst of ten thousand launches would spend
//! itself being refused. Here each operation waits its turn instead: a bucket per operation (per
//! region, since ECS counts per region), and a bound on the calls in flight.
//!
//! The bucket is kept as the time its next token is due (the generic cell rate algorithm): each
//! caller reserves a turn and sleeps once until it comes, first come first served, so ten
//! thousand waiters cost ten thousand timers, not a stampede every time a token appears.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The rate, burst and concurrency of the calls to one service in one region.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CallLimitSettings {
    /// Sustained calls per second, per operation.
    pub per_second: f64,
    /// Calls per operation that may go at once after a quiet spell.
    pub burst: u32,
    /// Calls of any operation waiting for an answer at one time.
    pub max_in_flight: usize,
}

impl CallLimitSettings {
    /// ECS: well inside the smallest of its documented per-operation buckets (RunTask's), so
    /// that one controller leaves room for the account's other users.
    pub const ECS: CallLimitSettings = CallLimitSettings {
        per_second: 20.0,
        burst: 20,
        max_in_flight: 16,
    };
    /// CloudWatch Logs GetLogEvents: 10 a second per account and region by default.
    pub const LOGS: CallLimitSettings = CallLimitSettings {
        per_second: 10.0,
        burst: 10,
        max_in_flight: 4,
    };
}

/// The limits of one service in one region, shared by every caller there.
#[derive(Debug)]
pub struct CallLimits {
    settings: CallLimitSettings,
    buckets: Mutex<HashMap<&'static str, Arc<Bucket>>>,
    in_flight: Arc<Semaphore>,
}

/// The right to make one call now; the call counts as in flight until it is dropped.
pub struct CallPermit {
    _in_flight: Option<OwnedSemaphorePermit>,
}

impl CallLimits {
    pub fn new(settings: CallLimitSettings) -> Arc<Self> {
        Arc::new(CallLimits {
            settings,
            buckets: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
        })
    }

    pub fn settings(&self) -> CallLimitSettings {
        self.settings
    }

    /// Waits for `operation`'s turn in its bucket, then for room among the calls in flight.
    pub async fn permit(&self, operation: &'static str) -> CallPermit {
        let bucket = {
            let mut buckets = self
                .buckets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            buckets
                .entry(operation)
                .or_insert_with(|| Arc::new(Bucket::new(self.settings)))
                .clone()
        };
        bucket.take().await;
        // The semaphore is never closed; were it, calls would only lose their bound in number.
        let permit = self.in_flight.clone().acquire_owned().await.ok();
        CallPermit { _in_flight: permit }
    }
}

/// A pace alone (no bound in number): for a client whose requests include long-lived watches.
#[derive(Debug)]
pub struct Pace(Bucket);

impl Pace {
    /// `per_second` sustained, `burst` at once after a quiet spell.
    pub fn new(per_second: f64, burst: u32) -> Arc<Self> {
        Arc::new(Pace(Bucket::new(CallLimitSettings {
            per_second,
            burst,
            max_in_flight: 1,
        })))
    }

    /// Waits for the next turn.
    pub async fn wait(&self) {
        self.0.take().await;
    }
}

/// One operation's token bucket, as the time the next token is due.
#[derive(Debug)]
struct Bucket {
    /// Time between two tokens.
    interval: Duration,
    /// How far ahead of the sustained pace a burst may run.
    tolerance: Duration,
    next_due: Mutex<Option<Instant>>,
}

impl Bucket {
    fn new(settings: CallLimitSettings) -> Self {
        let per_second = if settings.per_second.is_finite() && settings.per_second > 0.0 {
            settings.per_second
        } else {
            1.0
        };
        let interval = Duration::from_secs_f64(1.0 / per_second);
        Bucket {
            interval,
            tolerance: interval * settings.burst.max(1).saturating_sub(1),
            next_due: Mutex::new(None),
        }
    }

    /// Reserves the next turn and sleeps until it comes.
    async fn take(&self) {
        let start = {
            let mut due = self
                .next_due
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let theoretical = due.map_or(now, |d| d.max(now));
            let start = theoretical
                .checked_sub(self.tolerance)
                .map_or(now, |s| s.max(now));
            *due = Some(theoretical + self.interval);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_second: f64, burst: u32, max_in_flight: usize) -> CallLimitSettings {
        CallLimitSettings {
            per_second,
            burst,
            max_in_flight,
        }
    }

    /// When each of `n` calls of `operation` got its permit, in seconds from the start.
    async fn times(limits: &Arc<CallLimits>, operation: &'static str, n: usize) -> Vec<f64> {
        let start = Instant::now();
        let calls = (0..n).map(|_| {
            let limits = limits.clone();
            tokio::spawn(async move {
                let _permit = limits.permit(operation).await;
                start.elapsed().as_secs_f64()
            })
        });
        let mut times = Vec::new();
        for call in calls {
            times.push(call.await.expect("joined"));
        }
        times.sort_by(f64::total_cmp);
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_then_the_sustained_rate_holds() {
        let limits = CallLimits::new(settings(20.0, 20, 1000));
        let times = times(&limits, "RunTask", 100).await;
        assert!(times[..20].iter().all(|t| *t < 0.001), "{times:?}");
        // 80 more at 20 a second: the last at 4 s.
        assert!((times[99] - 4.0).abs() < 0.01, "{times:?}");
        // In no window of one second are there more than burst + rate calls.
        for (i, t) in times.iter().enumerate() {
            let within = times[i..].iter().take_while(|u| **u < t + 1.0).count();
            assert!(within <= 40, "{within} calls in the second after {t}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn operations_have_buckets_of_their_own_and_a_quiet_spell_refills() {
        let limits = CallLimits::new(settings(10.0, 5, 1000));
        let run = times(&limits, "RunTask", 5).await;
        let describe = times(&limits, "DescribeTasks", 5).await;
        assert!(
            run.iter().chain(&describe).all(|t| *t < 0.001),
            "{run:?} {describe:?}"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        let again = times(&limits, "RunTask", 6).await;
        assert!(again[..5].iter().all(|t| *t < 0.001), "{again:?}");
        assert!((again[5] - 0.1).abs() < 0.01, "{again:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_bound_are_in_flight() {
        let limits = CallLimits::new(settings(1000.0, 1000, 3));
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (limits, busy, most) = (limits.clone(), busy.clone(), most.clone());
                tokio::spawn(async move {
                    let _permit = limits.permit("DescribeTasks").await;
                    let now = busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    busy.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })
            })
            .collect();
        for call in calls {
            call.await.expect("joined");
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
