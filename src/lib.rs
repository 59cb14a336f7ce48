pub mod yaml;
pub mod run_task;
pub mod plan;
pub mod step;
pub mod validate;
pub mod batch_file;
