//! The batch file: the seed's YAML format (a list of `- name: {type: ecs_task, parameters: ...}`),
//! read with line:column on every node and checked against the JSON schema derived from the core's
//! step types, plus the ECS limits a schema cannot say.
//!
//! Owns: [`yaml`] (YAML with positions), [`validate`] (schema-driven checks of any model type),
//! [`file`] (the format itself, its limits and its diagnostics). May use the core; no AWS, no
//! Kubernetes, no I/O (the caller reads the text).

pub mod file;
pub mod validate;
pub mod yaml;
