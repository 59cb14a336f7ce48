//! What tenants may run, and as whom: which SequencePolicies govern a namespace, kept current by
//! watches of the policies and of Namespace labels ([`policies`]), and the AWS identity a
//! namespace's Sequences act as ([`identity`]). The allow-list rule itself is the core's
//! (`sequencer_core::policy`); it is applied where a plan is resolved (`sequence::plan_source`).
//!
//! May use: the core, `ecs` (its session type), `api`.

pub mod identity;
pub mod policies;
