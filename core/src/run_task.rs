//! The ECS RunTask request, complete and typed, as a batch step's `parameters` and a Sequence's
//! step carry it. Plain data: its mapping onto aws-sdk-ecs lives in the ECS adapter
//! (`sequencer::ecs::request`).
//!
//! Field names are the ECS API's (camelCase). The batch-file reader also accepts the Ruby SDK's
//! snake_case spelling the seed used (see `validate.rs`). The JSON schema derived from these types
//! is what a batch file is validated against, so a constraint written here is enforced there.
//! `clientToken` is not a field: sequencer derives it per attempt, and `startedBy` only lends its
//! prefix (see `identity.rs`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of one ECS RunTask call (the AWS API reference "RunTask" request, minus
/// `clientToken`, which sequencer sets itself per attempt).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunTaskParameters {
    /// The family and revision (`family:revision`) or full ARN of the task definition to run.
    #[schemars(length(min = 1))]
    pub task_definition: String,
    /// Short name or ARN of the cluster; the default cluster when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub cluster: Option<String>,
    /// How many copies of the task to start (1 to 10). The step succeeds only if all succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<LaunchType>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<CapacityProviderStrategyItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_configuration: Option<NetworkConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<TaskOverride>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub placement_constraints: Vec<PlacementConstraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub placement_strategy: Vec<PlacementStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Your own tags (sequencer adds three of its own: run, step and attempt).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<PropagateTags>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_id: Option<String>,
    /// A label of yours for the tasks (up to 18 of A-Z a-z 0-9 - _ /). Sequencer sends it followed by
    /// its own run, step and attempt (`label-1a2b3c4d-2-1`), which is how it finds its tasks after a
    /// restart; without it the prefix is `seq`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    #[serde(
        default,
        rename = "enableECSManagedTags",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ecs_managed_tags: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_execute_command: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_configurations: Vec<TaskVolumeConfiguration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LaunchType {
    #[serde(rename = "EC2")]
    Ec2,
    #[serde(rename = "FARGATE")]
    Fargate,
    #[serde(rename = "EXTERNAL")]
    External,
    #[serde(rename = "MANAGED_INSTANCES")]
    ManagedInstances,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PropagateTags {
    TaskDefinition,
    Service,
    None,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CapacityProviderStrategyItem {
    pub capacity_provider: String,
    /// Relative share of the tasks (0 to 1000; ECS's default 0). Always sent, as the SDK does.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: i32,
    /// Tasks placed on this provider first (0 to 100000; ECS's default 0). Always sent.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100000))]
    pub base: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkConfiguration {
    pub awsvpc_configuration: AwsVpcConfiguration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsVpcConfiguration {
    #[schemars(length(min = 1, max = 16))]
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assign_public_ip: Option<AssignPublicIp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssignPublicIp {
    Enabled,
    Disabled,
}

/// Overrides for the task and its containers. ECS allows at most 8192 characters of overrides JSON.
/// (`inferenceAcceleratorOverrides` is left out: AWS retired Elastic Inference.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskOverride {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub container_overrides: Vec<ContainerOverride>,
    /// Task-level CPU units, as text (for example "1024" or "1 vCPU").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Task-level memory, as text (for example "2048" or "2 GB").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<EphemeralStorage>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerOverride {
    /// The container's name in the task definition.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<KeyValuePair>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_files: Vec<EnvironmentFile>,
    /// CPU units for the container (0 to 262144, the Linux kernel's limit for CPU shares).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 262144))]
    pub cpu: Option<i32>,
    /// The container's hard memory limit in MiB (at least 6, Docker's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 6))]
    pub memory: Option<i32>,
    /// The container's soft memory limit in MiB (at least 6, Docker's minimum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 6))]
    pub memory_reservation: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_requirements: Vec<ResourceRequirement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyValuePair {
    pub name: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentFile {
    /// ARN of the S3 object holding the variables.
    pub value: String,
    #[serde(rename = "type")]
    pub file_type: EnvironmentFileType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum EnvironmentFileType {
    #[serde(rename = "s3")]
    S3,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRequirement {
    pub value: String,
    #[serde(rename = "type")]
    pub resource_type: ResourceType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ResourceType {
    #[serde(rename = "GPU")]
    Gpu,
    InferenceAccelerator,
    NeuronDevice,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EphemeralStorage {
    #[serde(rename = "sizeInGiB")]
    #[schemars(range(min = 21, max = 200))]
    pub size_in_gib: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementConstraint {
    #[serde(rename = "type")]
    pub constraint_type: PlacementConstraintType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PlacementConstraintType {
    DistinctInstance,
    MemberOf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementStrategy {
    #[serde(rename = "type")]
    pub strategy_type: PlacementStrategyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PlacementStrategyType {
    Random,
    Spread,
    Binpack,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tag {
    #[schemars(length(min = 1, max = 128))]
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskVolumeConfiguration {
    pub name: String,
    #[serde(
        default,
        rename = "managedEBSVolume",
        skip_serializing_if = "Option::is_none"
    )]
    pub managed_ebs_volume: Option<ManagedEbsVolume>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagedEbsVolume {
    /// The IAM role ECS uses to manage the volume.
    pub role_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<String>,
    /// The volume's size in GiB (1 to 16384; the volume type narrows it further).
    #[serde(default, rename = "sizeInGiB", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16384))]
    pub size_in_gib: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// MiB/s at which a volume made from a snapshot is initialized (100 to 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 300))]
    pub volume_initialization_rate: Option<i32>,
    /// I/O operations per second (100 to 256000; gp3, io1 and io2 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 256000))]
    pub iops: Option<i32>,
    /// MiB/s (125 to 1000; gp3 only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 125, max = 1000))]
    pub throughput: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag_specifications: Vec<EbsTagSpecification>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_policy: Option<TerminationPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem_type: Option<FilesystemType>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EbsTagSpecification {
    pub resource_type: EbsResourceType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate_tags: Option<PropagateTags>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EbsResourceType {
    Volume,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TerminationPolicy {
    pub delete_on_termination: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FilesystemType {
    Ext3,
    Ext4,
    Xfs,
    Ntfs,
}

/// What sequencer adds to every RunTask call: the idempotency token, the lookup key and its tags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaunchIdentity {
    pub client_token: String,
    pub started_by: String,
    pub tags: Vec<(String, String)>,
}

/// Tags sequencer adds to every task; counted against ECS's limit of 50 per task.
pub const SEQUENCER_TAG_COUNT: usize = 3;

/// The exact request sequencer sends, as JSON in the ECS API's own shape (used by `--dry-run`).
pub fn request_json(params: &RunTaskParameters, identity: &LaunchIdentity) -> serde_json::Value {
    let mut value = serde_json::to_value(params).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert("clientToken".into(), identity.client_token.clone().into());
        obj.insert("startedBy".into(), identity.started_by.clone().into());
        let tags: Vec<serde_json::Value> = params
            .tags
            .iter()
            .map(|t| serde_json::to_value(t).unwrap_or_default())
            .chain(
                identity
                    .tags
                    .iter()
                    .map(|(k, v)| serde_json::json!({"key": k, "value": v})),
            )
            .collect();
        obj.insert("tags".into(), tags.into());
    }
    value
}
