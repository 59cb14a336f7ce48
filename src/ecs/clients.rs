//! AWS configuration and clients. The CLI uses one region; the controller keeps one ECS and one
//! S3 client per region its Sequences name (`spec.region`) and per IAM role it assumes for them
//! (a SequencePolicy's `aws.roleArn`), made on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use crate::ecs::Ecs;
use crate::ecs::limits::{CallLimitSettings, CallLimits};
use crate::ecs::logs::LogReader;

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
    /// `None`: the controller's own identity.
    pub role: Option<AssumedRole>,
    pub ecs: Ecs,
    pub s3: aws_sdk_s3::Client,
}

/// An IAM role assumed for the Sequences of one namespace: the STS session is named after the
/// namespace and tagged with it, so that CloudTrail and the role's trust policy see whose work it
/// is.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct AssumedRole {
    pub role_arn: String,
    pub external_id: Option<String>,
    pub namespace: String,
}

/// The session tag naming the namespace whose Sequences a session acts for.
pub const NAMESPACE_SESSION_TAG: &str = "sequencer.dev/namespace";

impl AssumedRole {
    /// `sequencer-<namespace>`, within STS's 64 characters of `[\w+=,.@-]` (a namespace name is
    /// already within that alphabet).
    pub fn session_name(&self) -> String {
        let name: String = format!("sequencer-{}", self.namespace)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(*c))
            .take(64)
            .collect();
        name
    }
}

/// Clients by region and identity, sharing settings with the controller's default config.
pub struct AwsClients {
    base: SdkConfig,
    /// The rate and concurrency of each region's ECS calls (per role too: another role is
    /// usually another account, with throttles of its own).
    ecs_limits: CallLimitSettings,
    /// One log reader for every region (it keeps a client per log region itself).
    logs: LogReader,
    by_region: Mutex<HashMap<(String, Option<AssumedRole>), RegionClients>>,
}

impl AwsClients {
    pub fn new(base: SdkConfig, ecs_limits: CallLimitSettings) -> Arc<Self> {
        Arc::new(AwsClients {
            ecs_limits,
            logs: LogReader::new(&base),
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

    fn cached(&self, key: &(String, Option<AssumedRole>)) -> Option<RegionClients> {
        let map = self
            .by_region
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key).cloned()
    }

    fn keep(&self, key: (String, Option<AssumedRole>), made: RegionClients) -> RegionClients {
        let mut map = self
            .by_region
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two callers may have made them at once: the first kept wins, so every caller shares
        // one set of call limits.
        map.entry(key).or_insert(made).clone()
    }

    /// The clients for `region` (the default region when `None`), as the controller itself.
    pub fn region(&self, region: Option<&str>) -> RegionClients {
        let key = (self.region_name(region), None);
        if let Some(clients) = self.cached(&key) {
            return clients;
        }
        let config = self
            .base
            .to_builder()
            .region(Region::new(key.0.clone()))
            .build();
        let made = self.make(&key.0, None, &config, self.logs.clone());
        self.keep(key, made)
    }

    /// The clients for `region` acting as `role` (assumed through STS with the controller's own
    /// credentials; the SDK caches the session's credentials and renews them before they expire),
    /// or as the controller itself when `role` is `None`.
    pub async fn acting_as(
        &self,
        region: Option<&str>,
        role: Option<&AssumedRole>,
    ) -> RegionClients {
        let Some(role) = role else {
            return self.region(region);
        };
        let key = (self.region_name(region), Some(role.clone()));
        if let Some(clients) = self.cached(&key) {
            return clients;
        }
        let regional = self
            .base
            .to_builder()
            .region(Region::new(key.0.clone()))
            .build();
        let provider = AssumeRoleProvider::builder(role.role_arn.clone())
            .session_name(role.session_name())
            .tags([(NAMESPACE_SESSION_TAG, role.namespace.as_str())])
            .configure(&regional);
        let provider = match &role.external_id {
            Some(id) => provider.external_id(id.clone()),
            None => provider,
        };
        let provider = provider.build().await;
        let config = regional
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(provider))
            .build();
        let made = self.make(&key.0, Some(role.clone()), &config, LogReader::new(&config));
        self.keep(key, made)
    }

    fn make(
        &self,
        region: &str,
        role: Option<AssumedRole>,
        config: &SdkConfig,
        logs: LogReader,
    ) -> RegionClients {
        RegionClients {
            region: region.to_owned(),
            role,
            ecs: Ecs::new(
                aws_sdk_ecs::Client::new(config),
                logs,
                CallLimits::new(self.ecs_limits),
            ),
            s3: s3_client(config),
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
            super::error_chain(&e)
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
