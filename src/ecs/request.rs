//! The RunTask request of the core's data model (`sequencer_core::run_task`) mapped onto
//! aws-sdk-ecs, field by field. The only place that knows both shapes.

use aws_sdk_ecs::operation::run_task::builders::RunTaskFluentBuilder;
use aws_sdk_ecs::types as ecs;
use sequencer_core::run_task::*;
use serde::Serialize;

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
