//! What every controller room runs on, knowing nothing of how a Sequence is run: the Kubernetes
//! clients and their pace ([`kube_client`]), Lease [`leader`] election, which objects this
//! controller owns ([`shard`]), the HTTP [`server`] and its [`metrics`], the Event recorder
//! ([`event_recorder`]), what the watch caches keep of each object ([`cache`]), and not acting
//! on a cached copy older than the controller's own last write ([`freshness`]).
//!
//! May use: the core, `ecs` (its pace), `api`. Never another room of the controller.

pub mod cache;
pub mod event_recorder;
pub mod freshness;
pub mod kube_client;
pub mod leader;
pub mod metrics;
pub mod server;
pub mod shard;
