//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it:
//! the holder renews the Lease every `retry_period`; a candidate takes it over only after it has
//! seen the same record, unrenewed, for a whole `lease_duration` by its own clock (so clock skew
//! between replicas does not matter); every write carries the resourceVersion it read, so of two
//! candidates only one can win. A leader that cannot renew within `renew_deadline` (shorter than
//! the lease) stops leading before anyone else may start.
//!
//! Leader election keeps a second replica idle; it is not what makes launches exactly-once. Even
//! two controllers acting at once cannot launch a step twice: status writes are conditional on
//! the resourceVersion and the RunTask clientToken is derived from the run (see DESIGN.md).

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity` (the pod name in a cluster).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s between tries.
    pub fn new(namespace: String, name: String, identity: String) -> Self {
        LeaseConfig {
            namespace,
            name,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The other holder's record as last seen, and when (by our clock) it last changed.
    observed: Option<(Option<String>, Option<MicroTime>, Instant)>,
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Returns once this replica holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became the leader");
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot read or write the Lease")
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the Lease until a renewal has not succeeded for `renew_deadline` (or another
    /// replica holds it); then returns: this replica must stop leading at once.
    pub async fn keep(&mut self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            // A hanging request must not outlive the renew deadline.
            let left = self
                .config
                .renew_deadline
                .saturating_sub(last_renewed.elapsed())
                .max(Duration::from_millis(100));
            match tokio::time::timeout(left, self.try_acquire_or_renew()).await {
                Ok(Ok(true)) => last_renewed = Instant::now(),
                Ok(Ok(false)) => {
                    tracing::error!("leader election: another replica holds the Lease");
                    return;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election: renewal failed"),
                Err(_) => tracing::warn!("leader election: renewal timed out"),
            }
            if last_renewed.elapsed() >= self.config.renew_deadline {
                tracing::error!(
                    "leader election: could not renew the Lease within the renew deadline"
                );
                return;
            }
        }
    }

    /// Gives the Lease up (on a clean shutdown) so that a standby takes over without waiting for
    /// it to expire.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.metadata.managed_fields = None;
        if let Err(e) = self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "leader election: could not release the Lease");
        }
    }

    /// One try: `Ok(true)` when this replica holds the Lease after it.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration_seconds = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        if !mine {
            let record = (holder.clone(), spec.renew_time.clone());
            let changed = self
                .observed
                .as_ref()
                .is_none_or(|(h, r, _)| (h, r) != (&record.0, &record.1));
            if changed {
                self.observed = Some((record.0, record.1, Instant::now()));
            }
            let their_duration = Duration::from_secs(
                spec.lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(15),
            );
            let expired = self
                .observed
                .as_ref()
                .is_some_and(|(_, _, seen)| seen.elapsed() >= their_duration);
            if holder.is_some() && !expired {
                return Ok(false);
            }
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(duration_seconds);
        spec.renew_time = Some(now);
        lease.metadata.managed_fields = None;
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The exact requests of a takeover (tower-test stands in for the API server).
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;

    fn lease(holder: &str, duration: i32) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "sequencer-controller", "namespace": "ops", "resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration,
                        "renewTime": "2026-11-28T00:00:00.000000Z", "leaseTransitions": 4}})
    }

    async fn answer(
        handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
        body: Value,
    ) -> (Method, String, Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let (parts, body_in) = request.into_parts();
        let bytes = body_in.collect_bytes().await.expect("body");
        let sent = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        (parts.method, parts.uri.path().to_owned(), sent)
    }

    fn elector(service: tower_test::mock::Mock<Request<Body>, Response<Body>>) -> LeaderElector {
        let client = kube::Client::new(service, "default");
        LeaderElector::new(
            client,
            LeaseConfig::new("ops".into(), "sequencer-controller".into(), "me".into()),
        )
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_with_a_compare_and_swap() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let mut elector = elector(service);
        let server = tokio::spawn(async move {
            // leaseDurationSeconds 0: expired as soon as it is seen.
            let get = answer(&mut handle, lease("other", 0)).await;
            let put = answer(&mut handle, lease("me", 15)).await;
            (get, put)
        });
        assert!(elector.try_acquire_or_renew().await.unwrap());
        let ((get_method, get_path, _), (put_method, put_path, sent)) = server.await.unwrap();
        let path = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/sequencer-controller";
        assert_eq!((get_method, get_path.as_str()), (Method::GET, path));
        assert_eq!((put_method, put_path.as_str()), (Method::PUT, path));
        assert_eq!(sent["metadata"]["resourceVersion"], "7", "{sent}");
        assert_eq!(sent["spec"]["holderIdentity"], "me");
        assert_eq!(sent["spec"]["leaseTransitions"], 5);
        assert_eq!(sent["spec"]["leaseDurationSeconds"], 15);
    }

    #[tokio::test]
    async fn a_leader_stops_leading_when_it_cannot_renew_in_time() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let mut config = LeaseConfig::new("ops".into(), "sequencer-controller".into(), "me".into());
        config.retry_period = Duration::from_millis(20);
        config.renew_deadline = Duration::from_millis(300);
        let mut elector = LeaderElector::new(client, config);
        // The API server takes the request and never answers.
        let server = tokio::spawn(async move {
            let (_request, _send) = handle.next_request().await.expect("a renewal");
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), elector.keep())
            .await
            .expect("keep() gave up leading");
        assert!(started.elapsed() >= Duration::from_millis(300));
        server.abort();
    }

    #[tokio::test]
    async fn a_live_lease_of_another_replica_is_left_alone() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let mut elector = elector(service);
        let server = tokio::spawn(async move {
            answer(&mut handle, lease("other", 15)).await;
            handle
        });
        assert!(!elector.try_acquire_or_renew().await.unwrap());
        let mut handle = server.await.unwrap();
        // Nothing further was sent: no write to a Lease someone else holds.
        let next = tokio::time::timeout(Duration::from_millis(100), handle.next_request()).await;
        assert!(next.is_err(), "an unexpected request followed the read");
    }
}
