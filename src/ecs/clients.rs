//! AWS configuration and clients. The CLI uses one region; the controller keeps one ECS and one
//! S3 client per region its Sequences name (`spec.region`) and per namespace whose IAM role it
//! assumes (a SequencePolicy's `aws.roleArn`), made on first use. A Sequence acting under a role
//! signs its calls in a session of its own (`sessions`) through those same clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::ecs::Ecs;
use crate::ecs::limits::{CallLimitSettings, CallLimits};
use crate::ecs::logs::LogReader;
use crate::ecs::sessions::{AssumedRole, SessionCredentials, SessionKey, Sessions};

/// The standard AWS chain (environment, shared files, web identity/IRSA, Pod Identity, container
/// and instance roles), with `region` first when given, else us-east-1 as the seed did.
pub async fn aws_config(region: Option<String>) -> SdkConfig {
    let region = RegionProviderChain::first_try(region.map(Region::new))
        .or_default_provider()
        .or_else(Region::new("us-east-1"));
    aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    // A custom endpoint (an emulator, MinIO) rarely serves virtual-hosted bucket names.
    let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The clients for one region, acting as the controller itself or as a role it assumed.
#[derive(Clone, Debug)]
pub struct RegionClients {
    pub region: String,
    /// `None`: the controller's own identity; else the role, assumed for the namespace.
    pub role: Option<AssumedRole>,
    pub ecs: Ecs,
    s3: aws_sdk_s3::Client,
    /// The session of the one Sequence these clients act for, when they act for one.
    session: Option<SessionCredentials>,
}

impl RegionClients {
    /// The S3 client, signing in the Sequence's session when there is one (made when asked: a
    /// Sequence reads its source once per run).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        match &self.session {
            None => self.s3.clone(),
            Some(session) => {
                let config = self
                    .s3
                    .config()
                    .to_builder()
                    .credentials_provider(session.clone())
                    .build();
                aws_sdk_s3::Client::from_conf(config)
            }
        }
    }
}

/// The call limits shared by the callers with one key.
type Paces<K> = Mutex<HashMap<K, Arc<CallLimits>>>;

/// Clients by region and identity, sharing settings with the controller's default config.
pub struct AwsClients {
    base: SdkConfig,
    /// The rate and concurrency of each region's ECS calls.
    ecs_limits: CallLimitSettings,
    /// The ECS pace of each region and account (`None`: the controller's own): a role in
    /// another account has throttles of its own, and roles in one account share them.
    ecs_paces: Paces<(String, Option<String>)>,
    /// The CloudWatch Logs pace of each account.
    log_paces: Paces<Option<String>>,
    /// The controller's own log reader (it keeps a client per log region itself).
    logs: LogReader,
    sessions: Arc<Sessions>,
    by_region: Mutex<HashMap<(String, Option<AssumedRole>), RegionClients>>,
}

impl AwsClients {
    pub fn new(base: SdkConfig, ecs_limits: CallLimitSettings) -> Arc<Self> {
        let own_log_pace = CallLimits::new(CallLimitSettings::LOGS);
        Arc::new(AwsClients {
            ecs_limits,
            ecs_paces: Mutex::new(HashMap::new()),
            log_paces: Mutex::new(HashMap::from([(None, own_log_pace.clone())])),
            logs: LogReader::sharing(&base, own_log_pace),
            sessions: Sessions::new(&base),
            base,
            by_region: Mutex::new(HashMap::new()),
        })
    }

    /// The default region: the controller's `--region`, the AWS chain's, or us-east-1.
    pub fn default_region(&self) -> String {
        self.base
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into())
    }

    /// An SQS client for the queue at `queue_url`, in the queue's region (from a URL such as
    /// `https://sqs.eu-west-1.amazonaws.com/123456789012/name`), else the default region.
    pub fn sqs(&self, queue_url: &str) -> aws_sdk_sqs::Client {
        let mut config = self.base.to_builder();
        if let Some(region) = queue_region(queue_url) {
            config = config.region(Region::new(region));
        }
        aws_sdk_sqs::Client::new(&config.build())
    }

    fn region_name(&self, region: Option<&str>) -> String {
        region
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| self.default_region())
    }

    /// The clients for `region` (the default region when `None`), as the controller itself.
    pub fn region(&self, region: Option<&str>) -> RegionClients {
        self.acting_as(region, None)
    }

    /// The clients for `region` acting as `role` in the namespace's session (for the calls a
    /// namespace's Sequences share: the task watcher's DescribeTasks), or as the controller itself
    /// when `role` is `None`. Kept per region and identity.
    pub fn acting_as(&self, region: Option<&str>, role: Option<&AssumedRole>) -> RegionClients {
        let key = (self.region_name(region), role.cloned());
        let mut map = self
            .by_region
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(clients) = map.get(&key) {
            return clients.clone();
        }
        let made = self.make(&key.0, role);
        map.insert(key, made.clone());
        made
    }

    /// The clients one Sequence acts through: as the controller itself when `role` is `None`,
    /// else in a session of the Sequence's own (see `sessions`), sharing the namespace's clients
    /// and call limits.
    pub fn for_sequence(
        &self,
        region: Option<&str>,
        role: Option<&AssumedRole>,
        sequence: &str,
    ) -> RegionClients {
        let clients = self.acting_as(region, role);
        let Some(role) = role else {
            return clients;
        };
        let key = SessionKey {
            role: role.clone(),
            sequence: Some(sequence.to_owned()),
        };
        let session = self.sessions.provider(&clients.region, key);
        RegionClients {
            ecs: clients.ecs.acting_in(session.clone()),
            session: Some(session),
            ..clients
        }
    }

    /// Forgets a Sequence's session: its run has ended or it is gone (a later run assumes anew).
    pub fn forget_sequence(&self, namespace: &str, name: &str) {
        self.sessions.forget_sequence(namespace, name);
    }

    fn ecs_pace(&self, region: &str, account: Option<&str>) -> Arc<CallLimits> {
        let mut paces = self
            .ecs_paces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paces
            .entry((region.to_owned(), account.map(str::to_owned)))
            .or_insert_with(|| CallLimits::new(self.ecs_limits))
            .clone()
    }

    fn log_pace(&self, account: Option<&str>) -> Arc<CallLimits> {
        let mut paces = self
            .log_paces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paces
            .entry(account.map(str::to_owned))
            .or_insert_with(|| CallLimits::new(CallLimitSettings::LOGS))
            .clone()
    }

    fn make(&self, region: &str, role: Option<&AssumedRole>) -> RegionClients {
        let regional = self
            .base
            .to_builder()
            .region(Region::new(region.to_owned()));
        let account = role.map(AssumedRole::account);
        let (config, logs) = match role {
            None => (regional.build(), self.logs.clone()),
            Some(role) => {
                let namespace_session = SessionKey {
                    role: role.clone(),
                    sequence: None,
                };
                let config = regional
                    .credentials_provider(SharedCredentialsProvider::new(
                        self.sessions.provider(region, namespace_session),
                    ))
                    // `Sessions` keeps and renews the credentials itself.
                    .identity_cache(IdentityCache::no_cache())
                    .build();
                let logs = LogReader::sharing(&config, self.log_pace(account));
                (config, logs)
            }
        };
        RegionClients {
            region: region.to_owned(),
            role: role.cloned(),
            ecs: Ecs::new(
                aws_sdk_ecs::Client::new(&config),
                logs,
                self.ecs_pace(region, account),
            ),
            s3: s3_client(&config),
            session: None,
        }
    }
}
/// The region in an SQS queue URL's host (`sqs.<region>.amazonaws.com`, or the legacy
/// `<region>.queue.amazonaws.com`); `None` for any other host, e.g. an emulator's.
fn queue_region(queue_url: &str) -> Option<String> {
    let host = queue_url.split("://").nth(1)?.split(['/', ':']).next()?;
    let labels: Vec<&str> = host.split('.').collect();
    let region = match labels.as_slice() {
        ["sqs", region, "amazonaws", ..] => region,
        [region, "queue", "amazonaws", ..] => region,
        _ => return None,
    };
    let valid = !region.is_empty()
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    valid.then(|| (*region).to_owned())
}

/// Asks the credentials chain for credentials now, so a missing identity is reported before
/// anything starts.
pub async fn check_credentials(config: &SdkConfig) -> Result<(), String> {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = config.credentials_provider() else {
        return Err("no AWS credentials provider is configured".into());
    };
    provider.provide_credentials().await.map(|_| ()).map_err(|e| {
        format!(
            "no AWS credentials: {} (looked in the environment, the shared config files, web identity (IRSA), the container and instance roles)",
            crate::ecs::errors::error_chain(&e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::queue_region;

    #[test]
    fn a_queue_urls_region_comes_from_its_host() {
        for (url, region) in [
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/ecs-events",
                Some("eu-west-1"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                Some("cn-north-1"),
            ),
            (
                "https://us-east-2.queue.amazonaws.com/123456789012/q",
                Some("us-east-2"),
            ),
            ("http://127.0.0.1:5000/123456789012/q", None),
            ("https://sqs.EVIL/x.amazonaws.com/q", None),
            ("not a url", None),
        ] {
            assert_eq!(queue_region(url).as_deref(), region, "{url}");
        }
    }
}
