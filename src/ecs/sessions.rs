//! STS sessions of the IAM roles SequencePolicies name (`spec.aws.roleArn`).
//!
//! Every Sequence acts in a session of its own: its launches, stops, lookups, S3 reads and log
//! reads are signed with credentials whose session name and tags name its namespace and its name,
//! so CloudTrail, the role's trust policy and `aws:PrincipalTag` conditions see whose work each
//! call is. The one kind of call shared by a namespace's Sequences — the task watcher's batched
//! DescribeTasks — uses the namespace's session.
//!
//! The controller assumes the roles with its own credentials. Credentials are kept per session
//! (about a kilobyte each) and renewed [`RENEW_BEFORE`] ahead of their expiry; concurrent callers
//! of one session wait for one AssumeRole. A Sequence's are dropped when its run ends, and beyond
//! [`MAX_SESSIONS`] the ones nearest their expiry go first. AssumeRole calls are paced.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_sts::types::Tag;
use sha2::{Digest, Sha256};

use super::limits::{CallLimitSettings, CallLimits};
use crate::ecs::errors::error_chain;

/// Credentials are renewed when less than this is left of them (and never used closer to their
/// end, so a call signed with them cannot outlive them mid-retry).
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Sessions whose credentials are kept at once; a Sequence whose were dropped assumes again.
pub const MAX_SESSIONS: usize = 16_384;
/// STS's limit on a role session name.
const SESSION_NAME_MAX: usize = 64;

/// The session tag naming the namespace whose Sequences a session acts for.
pub const NAMESPACE_SESSION_TAG: &str = "sequencer.dev/namespace";
/// The session tag naming the Sequence a session acts for.
pub const SEQUENCE_SESSION_TAG: &str = "sequencer.dev/sequence";

/// AssumeRole pacing: within STS's default request quota, and no slower than ECS launches need
/// (each new run of a Sequence under a role starts one session).
const STS_LIMITS: CallLimitSettings = CallLimitSettings {
    per_second: 20.0,
    burst: 20,
    max_in_flight: 4,
};

/// The IAM role the Sequences of one namespace act as.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct AssumedRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub namespace: String,
}

impl AssumedRole {
    /// The account the role belongs to (`arn:<partition>:iam::<account>:role/<name>`): ECS
    /// throttles per account and region, so calls in one account share one pace.
    pub fn account(&self) -> &str {
        match self.role_arn.split(':').nth(4) {
            Some(account) if !account.is_empty() => account,
            _ => &self.role_arn,
        }
    }
}

/// One STS session: a role acting for a namespace, or for one Sequence in it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct SessionKey {
    pub role: AssumedRole,
    /// `None`: the namespace's shared session.
    pub sequence: Option<String>,
}

impl SessionKey {
    /// `sequencer-<namespace>` or `sequencer-<namespace>_<sequence>` (`_` is in no Kubernetes name, so
    /// `team-a`/`b-x` and `team-a-b`/`x` never share a name); when longer than STS's 64
    /// characters, cut and ended with a hash of the whole name, so that two long names never
    /// share a session. Kubernetes names are already within STS's `[\w+=,.@-]`.
    pub fn session_name(&self) -> String {
        let full = match &self.sequence {
            Some(name) => format!("sequencer-{}_{name}", self.role.namespace),
            None => format!("sequencer-{}", self.role.namespace),
        };
        let full: String = full
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c))
            .collect();
        if full.len() <= SESSION_NAME_MAX {
            return full;
        }
        let digest = Sha256::digest(full.as_bytes());
        let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{}-{hash}", &full[..SESSION_NAME_MAX - hash.len() - 1])
    }

    /// The session tags: the namespace, and the Sequence when the session is one Sequence's.
    pub fn tags(&self) -> Vec<(&'static str, &str)> {
        let mut tags = vec![(NAMESPACE_SESSION_TAG, self.role.namespace.as_str())];
        if let Some(name) = &self.sequence {
            tags.push((SEQUENCE_SESSION_TAG, name.as_str()));
        }
        tags
    }
}

/// Whether credentials may still sign a call at `now`.
pub fn still_good(credentials: &Credentials, now: SystemTime) -> bool {
    match credentials.expiry() {
        None => true,
        Some(expiry) => expiry
            .duration_since(now)
            .is_ok_and(|left| left > RENEW_BEFORE),
    }
}

/// One session's credentials; its lock is held while they are being assumed, so concurrent
/// callers wait for one AssumeRole.
type Slot = Arc<tokio::sync::Mutex<Option<Credentials>>>;

/// The sessions whose credentials are kept.
#[derive(Debug, Default)]
struct SessionCache {
    slots: HashMap<SessionKey, Slot>,
}

impl SessionCache {
    /// The slot of `key`, made (room made first) when there is none.
    fn slot(&mut self, key: &SessionKey, now: SystemTime) -> Slot {
        if let Some(slot) = self.slots.get(key) {
            return slot.clone();
        }
        if self.slots.len() >= MAX_SESSIONS {
            self.make_room(now);
        }
        let slot = Slot::default();
        self.slots.insert(key.clone(), slot.clone());
        slot
    }

    /// Drops every session that is not in use and no longer good, then, when still full, the
    /// ones nearest their expiry, down to seven eighths of the limit (so the next insertions do
    /// not scan again). A slot in use (being assumed or read) is never dropped.
    fn make_room(&mut self, now: SystemTime) {
        let mut idle: Vec<(SessionKey, Option<SystemTime>)> = self
            .slots
            .iter()
            .filter_map(|(key, slot)| {
                let held = slot.try_lock().ok()?;
                let expiry = match held.as_ref() {
                    Some(c) if still_good(c, now) => c
                        .expiry()
                        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400))),
                    _ => None,
                };
                Some((key.clone(), expiry))
            })
            .collect();
        // Not good first (None sorts first), then by expiry.
        idle.sort_by_key(|(_, expiry)| *expiry);
        let target = MAX_SESSIONS - MAX_SESSIONS / 8;
        for (key, expiry) in idle {
            if expiry.is_some() && self.slots.len() <= target {
                break;
            }
            self.slots.remove(&key);
        }
    }

    /// Forgets the sessions of one Sequence (under any role).
    fn forget_sequence(&mut self, namespace: &str, name: &str) {
        self.slots.retain(|key, _| {
            key.role.namespace != namespace || key.sequence.as_deref() != Some(name)
        });
    }
}

/// Assumes roles for sessions and keeps their credentials; one per process.
#[derive(Debug)]
pub struct Sessions {
    base: SdkConfig,
    /// One STS client per region (the regional endpoint of the Sequences' region).
    sts: Mutex<HashMap<String, aws_sdk_sts::Client>>,
    cache: Mutex<SessionCache>,
    limits: Arc<CallLimits>,
}

impl Sessions {
    /// Sessions assumed with `base`'s credentials (the controller's own).
    pub fn new(base: &SdkConfig) -> Arc<Self> {
        Arc::new(Sessions {
            base: base.clone(),
            sts: Mutex::new(HashMap::new()),
            cache: Mutex::new(SessionCache::default()),
            limits: CallLimits::new(STS_LIMITS),
        })
    }

    /// A credentials provider for `key`, asking STS in `region`.
    pub fn provider(self: &Arc<Self>, region: &str, key: SessionKey) -> SessionCredentials {
        SessionCredentials {
            sessions: self.clone(),
            region: region.to_owned(),
            key: Arc::new(key),
        }
    }

    /// The session's credentials: the kept ones while good, else newly assumed.
    pub async fn credentials(
        &self,
        region: &str,
        key: &SessionKey,
    ) -> Result<Credentials, CredentialsError> {
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.slot(key, SystemTime::now())
        };
        let mut held = slot.lock().await;
        if let Some(credentials) = held.as_ref().filter(|c| still_good(c, SystemTime::now())) {
            return Ok(credentials.clone());
        }
        let credentials = self.assume(region, key).await?;
        *held = Some(credentials.clone());
        Ok(credentials)
    }

    /// Forgets a Sequence's sessions: its run has ended, or it is gone.
    pub fn forget_sequence(&self, namespace: &str, name: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.forget_sequence(namespace, name);
    }

    fn sts(&self, region: &str) -> aws_sdk_sts::Client {
        let mut clients = self.sts.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let config = self
                    .base
                    .to_builder()
                    .region(Region::new(region.to_owned()))
                    .build();
                aws_sdk_sts::Client::new(&config)
            })
            .clone()
    }

    async fn assume(
        &self,
        region: &str,
        key: &SessionKey,
    ) -> Result<Credentials, CredentialsError> {
        let session = key.session_name();
        let failed = |why: String| {
            CredentialsError::provider_error(format!(
                "assuming {} as session {session}: {why}",
                key.role.role_arn
            ))
        };
        let mut request = self
            .sts(region)
            .assume_role()
            .role_arn(&key.role.role_arn)
            .role_session_name(&session)
            .set_external_id(key.role.external_id.clone());
        for (name, value) in key.tags() {
            let tag = Tag::builder().key(name).value(value).build();
            request = request.tags(tag.map_err(|e| failed(e.to_string()))?);
        }
        let answer = {
            let _turn = self.limits.permit("AssumeRole").await;
            request.send().await
        };
        let answer = answer.map_err(|e| failed(error_chain(&e)))?;
        let given = answer
            .credentials()
            .ok_or_else(|| failed("STS answered without credentials".into()))?;
        Ok(Credentials::new(
            given.access_key_id(),
            given.secret_access_key(),
            Some(given.session_token().to_owned()),
            SystemTime::try_from(*given.expiration()).ok(),
            "sequencer-sts-session",
        ))
    }
}

/// The credentials of one session, for the SDK's clients.
#[derive(Clone, Debug)]
pub struct SessionCredentials {
    sessions: Arc<Sessions>,
    region: String,
    key: Arc<SessionKey>,
}

impl ProvideCredentials for SessionCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.sessions.credentials(&self.region, &self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(namespace: &str) -> AssumedRole {
        AssumedRole {
            role_arn: "arn:aws:iam::123456789012:role/batch".into(),
            external_id: None,
            namespace: namespace.into(),
        }
    }

    fn key(namespace: &str, sequence: Option<&str>) -> SessionKey {
        SessionKey {
            role: role(namespace),
            sequence: sequence.map(Into::into),
        }
    }

    fn expiring_in(seconds: u64, now: SystemTime) -> Credentials {
        let expiry = now + Duration::from_secs(seconds);
        Credentials::new("AKIA", "secret", Some("token".into()), Some(expiry), "test")
    }

    #[test]
    fn session_names_name_the_namespace_and_the_sequence() {
        assert_eq!(key("team-a", None).session_name(), "sequencer-team-a");
        assert_eq!(
            key("team-a", Some("nightly.etl")).session_name(),
            "sequencer-team-a_nightly.etl"
        );
        // A separator no namespace or Sequence name can hold: these two never share a session.
        assert_ne!(
            key("team-a", Some("b-x")).session_name(),
            key("team-a-b", Some("x")).session_name()
        );
        assert_eq!(
            key("team-a", Some("nightly")).tags(),
            vec![
                (NAMESPACE_SESSION_TAG, "team-a"),
                (SEQUENCE_SESSION_TAG, "nightly")
            ]
        );
        assert_eq!(
            key("team-a", None).tags(),
            vec![(NAMESPACE_SESSION_TAG, "team-a")]
        );
    }

    #[test]
    fn long_session_names_are_cut_to_64_and_stay_distinct() {
        let namespace = "n".repeat(63);
        let one = key(&namespace, Some(&format!("{}-1", "s".repeat(200)))).session_name();
        let two = key(&namespace, Some(&format!("{}-2", "s".repeat(200)))).session_name();
        let shared = key(&namespace, None).session_name();
        for name in [&one, &two, &shared] {
            assert_eq!(name.len(), 64, "{name}");
            assert!(name.starts_with("sequencer-nnn"), "{name}");
        }
        assert_ne!(one, two);
        assert_ne!(one, shared);
        // Stable: the same Sequence always gets the same name.
        assert_eq!(
            one,
            key(&namespace, Some(&format!("{}-1", "s".repeat(200)))).session_name()
        );
    }

    #[test]
    fn an_accounts_id_comes_from_the_role_arn() {
        assert_eq!(role("a").account(), "123456789012");
        let odd = AssumedRole {
            role_arn: "not-an-arn".into(),
            ..role("a")
        };
        assert_eq!(odd.account(), "not-an-arn");
    }

    #[test]
    fn credentials_are_renewed_before_they_expire() {
        let now = SystemTime::now();
        assert!(still_good(&expiring_in(3600, now), now));
        assert!(still_good(
            &expiring_in(RENEW_BEFORE.as_secs() + 1, now),
            now
        ));
        assert!(!still_good(&expiring_in(RENEW_BEFORE.as_secs(), now), now));
        assert!(!still_good(&expiring_in(10, now), now));
        let past = Credentials::new("A", "s", None, Some(now - Duration::from_secs(1)), "t");
        assert!(!still_good(&past, now));
        assert!(still_good(
            &Credentials::new("A", "s", None, None, "t"),
            now
        ));
    }

    #[test]
    fn forgetting_a_sequence_keeps_the_others_and_the_namespaces() {
        let now = SystemTime::now();
        let mut cache = SessionCache::default();
        for key in [
            key("a", Some("x")),
            key("a", Some("y")),
            key("b", Some("x")),
            key("a", None),
        ] {
            cache.slot(&key, now);
        }
        cache.forget_sequence("a", "x");
        assert!(!cache.slots.contains_key(&key("a", Some("x"))));
        assert_eq!(cache.slots.len(), 3);
        assert!(cache.slots.contains_key(&key("b", Some("x"))));
        assert!(cache.slots.contains_key(&key("a", None)));
    }

    #[test]
    fn a_full_cache_drops_spent_sessions_first_then_those_nearest_expiry() {
        let now = SystemTime::now();
        let mut cache = SessionCache::default();
        let name = |i: usize| format!("s{i}");
        for i in 0..MAX_SESSIONS {
            let slot = cache.slot(&key("a", Some(&name(i))), now);
            // Every tenth never got credentials; the rest expire later the higher i is.
            if i % 10 != 0 {
                let credentials = expiring_in(3600 + i as u64, now);
                *slot.try_lock().unwrap() = Some(credentials);
            }
        }
        // One in use is never dropped, though it has no credentials yet.
        let busy = cache.slots[&key("a", Some(&name(0)))].clone();
        let _in_use = busy.try_lock().unwrap();
        cache.slot(&key("a", Some("new")), now);
        let target = MAX_SESSIONS - MAX_SESSIONS / 8;
        assert_eq!(cache.slots.len(), target + 1);
        assert!(cache.slots.contains_key(&key("a", Some("new"))));
        assert!(cache.slots.contains_key(&key("a", Some(&name(0)))));
        assert!(!cache.slots.contains_key(&key("a", Some(&name(10)))));
        // The latest to expire stay; the earliest went.
        assert!(
            cache
                .slots
                .contains_key(&key("a", Some(&name(MAX_SESSIONS - 1))))
        );
        assert!(!cache.slots.contains_key(&key("a", Some(&name(1)))));
    }
}
