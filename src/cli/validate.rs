//! `sequencer validate`: read and check a batch, print what sequencer understood; no ECS call.

use super::args::ValidateArgs;
use super::progress::OutputFormat;
use super::{Exit, load_plan};
use crate::batch::file;

pub async fn validate(args: ValidateArgs) -> Exit {
    let (_, loaded, plan) = match load_plan(args.batch, args.region).await {
        Ok(p) => p,
        Err(exit) => return exit,
    };
    match args.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&file::steps_json(&plan.steps)).unwrap_or_default()
        ),
        OutputFormat::Human => {
            let names: Vec<String> = plan.steps.iter().map(|s| s.name.clone()).collect();
            println!(
                "{}: valid, {} step(s): {}",
                loaded.label,
                plan.steps.len(),
                names.join(", ")
            );
            if let Some(object) = &loaded.s3 {
                println!(
                    "read S3 version {} (ETag {})",
                    object.version_id.as_deref().unwrap_or("none"),
                    object.etag.as_deref().unwrap_or("none")
                );
            }
        }
    }
    Exit::Success
}
