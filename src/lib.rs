pub mod yaml;
pub mod run_task;
pub mod plan;
pub mod step;
pub mod validate;
pub mod batch_file;
pub mod identity;
pub mod status;
pub mod judge;
pub mod action;
pub mod backoff;
pub mod observation;
pub mod engine;
#[cfg(test)]
mod engine_tests;
