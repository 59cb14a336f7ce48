//! Delays between tries. Jitter comes from a hash of a seed string rather than a random source,
//! so the engine stays a pure function and a resumed run computes the same delay.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::step::Backoff;

/// The longest wait between attempts, whatever a policy says (the schema allows no more).
pub const MAX_BACKOFF_SECONDS: u64 = 86_400;

/// initial × factor^(n-1), capped at max (and at a day), then scaled into [50 %, 100 %] by the
/// seed's hash.
pub fn retry_delay(policy: &Backoff, failures: u32, seed: &str) -> Duration {
    let exponent = failures.saturating_sub(1).min(32);
    let raw = policy
        .initial_seconds
        .saturating_mul(u64::from(policy.factor).saturating_pow(exponent));
    let capped = raw.min(policy.max_seconds).min(MAX_BACKOFF_SECONDS);
    jittered(Duration::from_secs(capped), seed)
}

/// For transient API errors: 1 s doubling to at most 60 s, jittered.
pub fn api_error_delay(errors: u32, seed: &str) -> Duration {
    let exponent = errors.saturating_sub(1).min(6);
    jittered(Duration::from_secs((1u64 << exponent).min(60)), seed)
}

fn jittered(base: Duration, seed: &str) -> Duration {
    let digest = Sha256::digest(seed.as_bytes());
    let fraction = f64::from(u16::from_be_bytes([digest[0], digest[1]])) / f64::from(u16::MAX);
    base.mul_f64(0.5 + 0.5 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_jitters_within_half_to_full() {
        let p = Backoff {
            initial_seconds: 10,
            max_seconds: 60,
            factor: 2,
        };
        for (n, full) in [(1, 10), (2, 20), (3, 40), (4, 60), (40, 60)] {
            let d = retry_delay(&p, n, "seed").as_secs_f64();
            assert!(
                d >= full as f64 * 0.5 && d <= full as f64,
                "attempt {n}: {d}"
            );
        }
        assert_eq!(retry_delay(&p, 2, "a"), retry_delay(&p, 2, "a"));
        // Numbers past what the schema allows are capped, never a panic or an overflow to "now".
        let absurd = Backoff {
            initial_seconds: u64::MAX,
            max_seconds: u64::MAX,
            factor: u32::MAX,
        };
        for n in [1, 2, 40, u32::MAX] {
            let d = retry_delay(&absurd, n, "seed").as_secs();
            assert!(
                (MAX_BACKOFF_SECONDS / 2..=MAX_BACKOFF_SECONDS).contains(&d),
                "{n}: {d}"
            );
        }
        assert_ne!(retry_delay(&p, 2, "a"), retry_delay(&p, 2, "b"));
    }
}
