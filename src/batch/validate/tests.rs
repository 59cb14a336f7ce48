//! The schema walker on a step definition.

use super::*;
use crate::batch::yaml::parse;
use sequencer_core::step::StepDefinition;

fn check(text: &str) -> Result<Json, Vec<Problem>> {
    SchemaChecker::for_type::<StepDefinition>(|_| None).check(&parse(text).unwrap(), "")
}

#[test]
fn snake_and_camel_case_are_the_same_key_and_come_out_camel() {
    let json = check("type: ecs_task\nparameters:\n  task_definition: td:1\n  launchType: fargate\n  enable_ecs_managed_tags: true\n").unwrap();
    assert_eq!(json["parameters"]["taskDefinition"], "td:1");
    assert_eq!(json["parameters"]["launchType"], "FARGATE");
    assert_eq!(json["parameters"]["enableECSManagedTags"], true);
}

#[test]
fn every_problem_is_reported_with_place_and_suggestion() {
    let problems =
        check("type: shell\nparameters:\n  task_defintion: td\n  count: 11\n").unwrap_err();
    let messages: Vec<String> = problems
        .iter()
        .map(|p| format!("{} {} {}", p.at, p.path, p.message))
        .collect();
    assert_eq!(problems.len(), 3, "{messages:#?}");
    assert!(
        messages[0].starts_with("1:7 type `shell` is not allowed here; allowed: ecs_task"),
        "{messages:#?}"
    );
    assert!(
        messages[1].contains("3:3 parameters.task_defintion unknown key")
            && messages[1].contains("did you mean `taskDefinition` (or `task_definition`)"),
        "{messages:#?}"
    );
    assert!(
        messages[2].contains(
            "4:10 parameters.count 11 is out of range; allowed: a whole number from 1 to 10"
        ),
        "{messages:#?}"
    );
    // The misspelt key was suggested; it is not reported a second time as missing.
    assert!(
        !messages.iter().any(|m| m.contains("needs the key")),
        "{messages:#?}"
    );
    // A required key that is simply absent is reported.
    let absent = check("type: ecs_task\nparameters: {cluster: c}\n").unwrap_err();
    assert!(
        absent[0].message.contains("needs the key `taskDefinition`"),
        "{absent:?}"
    );
}

#[test]
fn the_same_key_in_two_spellings_is_a_duplicate() {
    let problems =
        check("type: ecs_task\nparameters:\n  taskDefinition: a\n  task_definition: b\n")
            .unwrap_err();
    assert_eq!(problems[0].at.line, 4);
    assert!(
        problems[0]
            .message
            .contains("given twice (first at line 3:3)"),
        "{problems:?}"
    );
}

#[test]
fn untagged_alternatives_accept_either_form() {
    let json = check(
        "type: ecs_task\nparameters: {taskDefinition: a}\nsuccess: {containers: [app, side]}\n",
    )
    .unwrap();
    assert_eq!(
        json["success"]["containers"],
        serde_json::json!(["app", "side"])
    );
    let json = check(
        "type: ecs_task\nparameters: {taskDefinition: a}\nsuccess: {containers: Essential}\n",
    )
    .unwrap();
    assert_eq!(json["success"]["containers"], "essential");
    let problems =
        check("type: ecs_task\nparameters: {taskDefinition: a}\nsuccess: {containers: some}\n")
            .unwrap_err();
    assert!(
        problems[0].message.contains("allowed: all, essential"),
        "{problems:?}"
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    let problems =
        check("type: ecs_task\nparameters: {taskDefinition: [a]}\nactive: maybe\n").unwrap_err();
    assert!(
        problems
            .iter()
            .any(|p| p.path == "parameters.taskDefinition"
                && p.message == "expected text, found a list"),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.path == "active" && p.message == "expected true or false, found text"),
        "{problems:?}"
    );
}

#[test]
fn snake_case_spelling_of_camel_names() {
    assert_eq!(snake_case("taskDefinition"), "task_definition");
    assert_eq!(
        snake_case("enableECSManagedTags"),
        "enable_ecs_managed_tags"
    );
    assert_eq!(snake_case("sizeInGiB"), "size_in_gi_b");
}
