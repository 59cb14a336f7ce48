//! Sharding: several controllers, each owning the Sequences (and ScheduledSequences) that carry
//! its value of the `sequencer.dev/shard` label, as Flux shards its controllers. The default
//! shard owns every object whose label names none of the other shards, unlabelled ones included,
//! so a typo in the label never leaves a Sequence without a controller. Each shard keeps its own
//! Lease, so shards never wait for one another.
//!
//! Two shards acting on one Sequence (during a relabel) cannot launch a step twice: status writes
//! carry the resourceVersion and the RunTask clientToken comes from the run (see DESIGN.md).
//! Sharding spreads the work; it is not what makes launches exactly-once.

use std::fmt;

use crate::api::labels::SHARD_LABEL;

/// Which objects this controller owns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shard {
    /// `None`: the default shard.
    name: Option<String>,
    /// The other shards' names, which the default shard leaves to them.
    others: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error(
        "shard name {0:?} is not a label value: at most 63 characters, letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
    )]
    InvalidName(String),
    #[error(
        "--shard {0} is not among --shards ({1}): list every named shard in --shards, or leave it out"
    )]
    NotListed(String, String),
}

impl Shard {
    /// The default shard when `name` is `None`; `shards` lists the named shards (the default
    /// shard needs them, to leave their objects alone).
    pub fn new(name: Option<String>, shards: Vec<String>) -> Result<Shard, ShardError> {
        let name = name.filter(|n| !n.is_empty());
        let mut others: Vec<String> = shards.into_iter().filter(|s| !s.is_empty()).collect();
        for candidate in name.iter().chain(&others) {
            if !is_label_value(candidate) {
                return Err(ShardError::InvalidName(candidate.clone()));
            }
        }
        others.sort();
        others.dedup();
        if let Some(name) = &name {
            if !others.is_empty() && !others.contains(name) {
                return Err(ShardError::NotListed(name.clone(), others.join(",")));
            }
            others.retain(|o| o != name);
        }
        Ok(Shard { name, others })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The label selector of this shard's objects; `None`: every object (unsharded).
    pub fn selector(&self) -> Option<String> {
        match &self.name {
            Some(name) => Some(format!("{SHARD_LABEL}={name}")),
            None if self.others.is_empty() => None,
            None => Some(format!("{SHARD_LABEL} notin ({})", self.others.join(","))),
        }
    }

    /// `selector` joined with another selector (both must hold).
    pub fn selector_and(&self, other: &str) -> String {
        match self.selector() {
            Some(own) => format!("{other},{own}"),
            None => other.to_owned(),
        }
    }

    /// The Lease a shard leads through: `base` for the default shard, `base-<name>` otherwise.
    pub fn lease_name(&self, base: &str) -> String {
        match &self.name {
            Some(name) => format!("{base}-{name}"),
            None => base.to_owned(),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "shard {name}"),
            None if self.others.is_empty() => write!(f, "unsharded"),
            None => write!(f, "default shard (besides {})", self.others.join(", ")),
        }
    }
}

/// A Kubernetes label value: at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unsharded_selects_everything_and_keeps_the_lease() {
        let shard = Shard::new(None, vec![]).unwrap();
        assert_eq!(shard.selector(), None);
        assert_eq!(shard.selector_and("a=b"), "a=b");
        assert_eq!(
            shard.lease_name("sequencer-controller"),
            "sequencer-controller"
        );
    }

    #[test]
    fn the_default_shard_takes_all_but_the_named_shards() {
        let shard = Shard::new(None, shards(&["b", "a", "a", ""])).unwrap();
        assert_eq!(
            shard.selector().as_deref(),
            Some("sequencer.dev/shard notin (a,b)")
        );
        assert_eq!(shard.lease_name("lease"), "lease");
        assert_eq!(shard.selector_and("x"), "x,sequencer.dev/shard notin (a,b)");
    }

    #[test]
    fn a_named_shard_takes_only_its_label_and_has_its_own_lease() {
        for list in [&[][..], &["a", "b"][..]] {
            let shard = Shard::new(Some("a".into()), shards(list)).unwrap();
            assert_eq!(shard.selector().as_deref(), Some("sequencer.dev/shard=a"));
            assert_eq!(shard.lease_name("lease"), "lease-a");
            assert_eq!(shard.name(), Some("a"));
        }
        assert_eq!(
            Shard::new(Some(String::new()), vec![]).unwrap(),
            Shard::default()
        );
    }

    #[test]
    fn names_that_are_not_label_values_or_not_listed_are_refused() {
        for bad in ["-a", "a-", "a b", "a,b", "x".repeat(64).as_str(), "a)"] {
            assert_eq!(
                Shard::new(Some(bad.into()), vec![]),
                Err(ShardError::InvalidName(bad.into())),
                "{bad}"
            );
            assert!(Shard::new(None, shards(&["ok", bad])).is_err(), "{bad}");
        }
        assert!(Shard::new(Some("a.b_c-9".into()), vec![]).is_ok());
        let err = Shard::new(Some("c".into()), shards(&["a", "b"])).unwrap_err();
        assert_eq!(err, ShardError::NotListed("c".into(), "a,b".into()));
        assert!(err.to_string().contains("--shards"));
    }
}
