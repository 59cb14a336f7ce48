//! The ECS RunTask request, complete and typed, as a batch step's `parameters` (and later a Sequence
//! step) carries it, and its mapping onto aws-sdk-ecs.
//!
//! Field names are the ECS API's (camelCase). The batch-file reader also accepts the Ruby SDK's
//! snake_case spelling the seed used (see `validate.rs`). The JSON schema derived from these types
//! is what a batch file is validated against, so a constraint written here is enforced there.
//! `clientToken` is not a field: sequencer derives it per attempt, and `startedBy` only lends its
//! prefix (see `identity.rs`).

use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types as ecs;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of one ECS RunTask call (the AWS API reference "RunTask" request, minus
/// `clientToken`, which sequencer sets itself per attempt).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunTaskParameters {
    /// The family and revision (`family:revision`) or full ARN of the task definition to run.
    pub task_definition: String,
    /// Short name or ARN of the cluster; the default cluster when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, rename = "sizeInGiB", skip_serializing_if = "Option::is_none")]
    pub size_in_gib: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_initialization_rate: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iops: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Fills an aws-sdk-ecs RunTask call from the parameters and sequencer's identity for this attempt.
pub fn apply_to(
    builder: RunTaskFluentBuilder,
    p: &RunTaskParameters,
    identity: &LaunchIdentity,
) -> RunTaskFluentBuilder {
    let tags = p
        .tags
        .iter()
        .map(|t| tag(&t.key, t.value.as_deref()))
        .chain(identity.tags.iter().map(|(k, v)| tag(k, Some(v))))
        .collect();
    builder
        .task_definition(&p.task_definition)
        .set_cluster(p.cluster.clone())
        .set_count(p.count.map(|c| c as i32))
        .set_launch_type(
            p.launch_type
                .map(|l| ecs::LaunchType::from(enum_text(&l).as_str())),
        )
        .set_capacity_provider_strategy(non_empty(p.capacity_provider_strategy.iter().filter_map(
            |c| {
                ecs::CapacityProviderStrategyItem::builder()
                    .capacity_provider(&c.capacity_provider)
                    .weight(c.weight)
                    .base(c.base)
                    .build()
                    .ok()
            },
        )))
        .set_platform_version(p.platform_version.clone())
        .set_network_configuration(p.network_configuration.as_ref().map(network_configuration))
        .set_overrides(p.overrides.as_ref().map(task_override))
        .set_placement_constraints(non_empty(p.placement_constraints.iter().map(|c| {
            ecs::PlacementConstraint::builder()
                .r#type(ecs::PlacementConstraintType::from(
                    enum_text(&c.constraint_type).as_str(),
                ))
                .set_expression(c.expression.clone())
                .build()
        })))
        .set_placement_strategy(non_empty(p.placement_strategy.iter().map(|s| {
            ecs::PlacementStrategy::builder()
                .r#type(ecs::PlacementStrategyType::from(
                    enum_text(&s.strategy_type).as_str(),
                ))
                .set_field(s.field.clone())
                .build()
        })))
        .set_group(p.group.clone())
        .set_tags(Some(tags))
        .set_propagate_tags(
            p.propagate_tags
                .map(|t| ecs::PropagateTags::from(enum_text(&t).as_str())),
        )
        .set_reference_id(p.reference_id.clone())
        .set_enable_ecs_managed_tags(p.enable_ecs_managed_tags)
        .set_enable_execute_command(p.enable_execute_command)
        .set_volume_configurations(non_empty(
            p.volume_configurations
                .iter()
                .filter_map(volume_configuration),
        ))
        .client_token(&identity.client_token)
        .started_by(&identity.started_by)
}

/// The API spelling of one of our enums: exactly what serde writes, so there is one table of names.
fn enum_text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn non_empty<T>(items: impl Iterator<Item = T>) -> Option<Vec<T>> {
    let v: Vec<T> = items.collect();
    (!v.is_empty()).then_some(v)
}

fn tag(key: &str, value: Option<&str>) -> ecs::Tag {
    ecs::Tag::builder()
        .key(key)
        .set_value(value.map(Into::into))
        .build()
}

fn network_configuration(n: &NetworkConfiguration) -> ecs::NetworkConfiguration {
    let vpc = &n.awsvpc_configuration;
    // `build()` fails only when `subnets` is unset; we always set it (validation requires ≥ 1).
    let awsvpc = ecs::AwsVpcConfiguration::builder()
        .set_subnets(Some(vpc.subnets.clone()))
        .set_security_groups(non_empty(vpc.security_groups.iter().cloned()))
        .set_assign_public_ip(
            vpc.assign_public_ip
                .map(|a| ecs::AssignPublicIp::from(enum_text(&a).as_str())),
        )
        .build()
        .ok();
    ecs::NetworkConfiguration::builder()
        .set_awsvpc_configuration(awsvpc)
        .build()
}

fn task_override(o: &TaskOverride) -> ecs::TaskOverride {
    ecs::TaskOverride::builder()
        .set_container_overrides(non_empty(
            o.container_overrides.iter().map(container_override),
        ))
        .set_cpu(o.cpu.clone())
        .set_memory(o.memory.clone())
        .set_task_role_arn(o.task_role_arn.clone())
        .set_execution_role_arn(o.execution_role_arn.clone())
        .set_ephemeral_storage(o.ephemeral_storage.as_ref().map(|e| {
            ecs::EphemeralStorage::builder()
                .size_in_gib(e.size_in_gib)
                .build()
        }))
        .build()
}

fn container_override(c: &ContainerOverride) -> ecs::ContainerOverride {
    ecs::ContainerOverride::builder()
        .name(&c.name)
        .set_command(c.command.clone())
        .set_environment(non_empty(c.environment.iter().map(|e| {
            ecs::KeyValuePair::builder()
                .name(&e.name)
                .value(&e.value)
                .build()
        })))
        .set_environment_files(non_empty(c.environment_files.iter().filter_map(|f| {
            ecs::EnvironmentFile::builder()
                .value(&f.value)
                .r#type(ecs::EnvironmentFileType::from(
                    enum_text(&f.file_type).as_str(),
                ))
                .build()
                .ok()
        })))
        .set_cpu(c.cpu)
        .set_memory(c.memory)
        .set_memory_reservation(c.memory_reservation)
        .set_resource_requirements(non_empty(c.resource_requirements.iter().filter_map(|r| {
            ecs::ResourceRequirement::builder()
                .value(&r.value)
                .r#type(ecs::ResourceType::from(
                    enum_text(&r.resource_type).as_str(),
                ))
                .build()
                .ok()
        })))
        .build()
}

fn volume_configuration(v: &TaskVolumeConfiguration) -> Option<ecs::TaskVolumeConfiguration> {
    let ebs = v.managed_ebs_volume.as_ref().and_then(|e| {
        ecs::TaskManagedEbsVolumeConfiguration::builder()
            .role_arn(&e.role_arn)
            .set_encrypted(e.encrypted)
            .set_kms_key_id(e.kms_key_id.clone())
            .set_volume_type(e.volume_type.clone())
            .set_size_in_gib(e.size_in_gib)
            .set_snapshot_id(e.snapshot_id.clone())
            .set_volume_initialization_rate(e.volume_initialization_rate)
            .set_iops(e.iops)
            .set_throughput(e.throughput)
            .set_tag_specifications(non_empty(e.tag_specifications.iter().filter_map(|t| {
                ecs::EbsTagSpecification::builder()
                    .resource_type(ecs::EbsResourceType::from(
                        enum_text(&t.resource_type).as_str(),
                    ))
                    .set_tags(non_empty(
                        t.tags.iter().map(|x| tag(&x.key, x.value.as_deref())),
                    ))
                    .set_propagate_tags(
                        t.propagate_tags
                            .map(|p| ecs::PropagateTags::from(enum_text(&p).as_str())),
                    )
                    .build()
                    .ok()
            })))
            .set_termination_policy(t_policy(e.termination_policy.as_ref()))
            .set_filesystem_type(
                e.filesystem_type
                    .map(|f| ecs::TaskFilesystemType::from(enum_text(&f).as_str())),
            )
            .build()
            .ok()
    });
    // `build()` fails only without `name`, which validation requires.
    ecs::TaskVolumeConfiguration::builder()
        .name(&v.name)
        .set_managed_ebs_volume(ebs)
        .build()
        .ok()
}

fn t_policy(p: Option<&TerminationPolicy>) -> Option<ecs::TaskManagedEbsVolumeTerminationPolicy> {
    p.and_then(|p| {
        ecs::TaskManagedEbsVolumeTerminationPolicy::builder()
            .delete_on_termination(p.delete_on_termination)
            .build()
            .ok()
    })
}
