use serde_json::{Value, json};

use super::*;

fn step(name: &str, parameters: Value) -> PlannedStep {
    serde_json::from_value(json!({"name": name, "type": "ecs_task", "parameters": parameters}))
        .expect("a step")
}

fn allowed(value: Value) -> Allowed {
    serde_json::from_value(value).expect("an allow-list")
}

fn team_a() -> Allowed {
    allowed(json!({
        "clusters": ["team-a"],
        "taskDefinitions": ["team-a-*", "shared-report", "arn:aws:ecs:eu-west-1:111111111111:task-definition/team-a-"],
        "taskRoleArns": ["arn:aws:iam::111111111111:role/team-a-task"],
        "executionRoleArns": [],
        "launchTypes": ["FARGATE"],
        "regions": ["eu-west-1"],
        "sourceBuckets": ["team-a-batches"],
        "gitUrlPrefixes": ["https://git.example.com/team-a/"],
        "maxCount": 2,
        "commandOverrides": false,
        "environmentOverrides": false,
    }))
}

fn good() -> Value {
    json!({"cluster": "team-a", "taskDefinition": "team-a-extract:3", "launchType": "FARGATE",
           "overrides": {"taskRoleArn": "arn:aws:iam::111111111111:role/team-a-task"}})
}

fn denial(parameters: Value) -> Box<Denial> {
    let shown = parameters.to_string();
    let steps = [step("ok", good()), step("load", parameters)];
    check("team-a", &team_a(), "eu-west-1", &Origin::Inline, &steps)
        .expect_err(&format!("refused: {shown}"))
}

fn with(changes: Value) -> Value {
    let mut p = good();
    for (k, v) in changes.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[test]
fn what_the_lists_name_runs() {
    let steps = [
        step("a", good()),
        step("b", with(json!({"taskDefinition": "shared-report"}))),
        step(
            "c",
            with(
                json!({"taskDefinition": "arn:aws:ecs:eu-west-1:111111111111:task-definition/team-a-load:7",
                        "cluster": "arn:aws:ecs:eu-west-1:111111111111:cluster/team-a", "count": 2}),
            ),
        ),
        step("d", with(json!({"overrides": {}}))),
    ];
    for origin in [
        Origin::Inline,
        Origin::ConfigMap,
        Origin::S3 {
            bucket: "team-a-batches".into(),
        },
        Origin::Git {
            url: "https://git.example.com/team-a/batches.git".into(),
        },
    ] {
        assert_eq!(
            check("team-a", &team_a(), "eu-west-1", &origin, &steps),
            Ok(())
        );
    }
    // Absent lists allow anything.
    let anything = step("x", json!({"taskDefinition": "whatever", "count": 10}));
    assert_eq!(
        check(
            "open",
            &Allowed::default(),
            "ap-south-1",
            &Origin::Inline,
            &[anything]
        ),
        Ok(())
    );
}

#[test]
fn each_field_refuses_what_its_list_does_not_name() {
    for (parameters, field, value) in [
        (with(json!({"cluster": "team-b"})), "cluster", "\"team-b\""),
        (
            json!({"taskDefinition": "team-a-x", "launchType": "FARGATE"}),
            "cluster",
            "\"default\"",
        ),
        (
            with(json!({"cluster": "arn:aws:ecs:eu-west-1:222222222222:cluster/team-b"})),
            "cluster",
            "\"arn:aws:ecs:eu-west-1:222222222222:cluster/team-b\"",
        ),
        (
            with(json!({"taskDefinition": "team-b-extract"})),
            "taskDefinition",
            "\"team-b-extract\"",
        ),
        (
            with(json!({"taskDefinition": "shared-report-v2"})),
            "taskDefinition",
            "\"shared-report-v2\"",
        ),
        (
            with(
                json!({"taskDefinition": "arn:aws:ecs:eu-west-1:111111111111:task-definition/team-b-x:1"}),
            ),
            "taskDefinition",
            "\"arn:aws:ecs:eu-west-1:111111111111:task-definition/team-b-x:1\"",
        ),
        (
            with(json!({"overrides": {"taskRoleArn": "arn:aws:iam::111111111111:role/admin"}})),
            "overrides.taskRoleArn",
            "\"arn:aws:iam::111111111111:role/admin\"",
        ),
        (
            with(json!({"overrides": {"executionRoleArn": "arn:aws:iam::111111111111:role/x"}})),
            "overrides.executionRoleArn",
            "\"arn:aws:iam::111111111111:role/x\"",
        ),
        (with(json!({"launchType": "EC2"})), "launchType", "\"EC2\""),
        (
            json!({"cluster": "team-a", "taskDefinition": "team-a-x"}),
            "launchType",
            "\"(none: the cluster's default)\"",
        ),
        (with(json!({"count": 3})), "count", "\"3\""),
        (
            with(
                json!({"overrides": {"containerOverrides": [{"name": "app", "command": ["sh"]}]}}),
            ),
            "overrides.containerOverrides[].command",
            "\"app\"",
        ),
        (
            with(
                json!({"overrides": {"containerOverrides": [{"name": "app", "environment": [{"name": "A", "value": "1"}]}]}}),
            ),
            "overrides.containerOverrides[].environment",
            "\"app\"",
        ),
    ] {
        let denied = denial(parameters.clone());
        assert_eq!(denied.step, Some((1, "load".into())), "{parameters}");
        assert_eq!(
            (denied.field.as_str(), denied.value.as_str()),
            (field, value),
            "{parameters}"
        );
        assert_eq!(denied.policy, "team-a");
    }
}

#[test]
fn the_region_and_the_source_are_checked_before_the_steps() {
    let steps = [step("a", with(json!({"cluster": "team-b"})))];
    let policy = team_a();
    let denied = check("team-a", &policy, "us-east-1", &Origin::Inline, &steps).unwrap_err();
    assert_eq!((denied.field.as_str(), denied.step), ("region", None));
    let s3 = Origin::S3 {
        bucket: "team-b-batches".into(),
    };
    let denied = check("team-a", &policy, "eu-west-1", &s3, &steps).unwrap_err();
    assert_eq!(denied.field, "source.s3 bucket");
    let git = Origin::Git {
        url: "https://git.example.com/team-b/x.git".into(),
    };
    let denied = check("team-a", &policy, "eu-west-1", &git, &steps).unwrap_err();
    assert_eq!(denied.field, "source.git url");
    assert_eq!(
        denied.to_string(),
        "source.git url \"https://git.example.com/team-b/x.git\" is not allowed by SequencePolicy team-a: \
         a URL starting with one of \"https://git.example.com/team-a/\""
    );
}

#[test]
fn the_message_names_the_step_the_field_the_value_and_what_is_allowed() {
    let denied = denial(with(
        json!({"overrides": {"executionRoleArn": "arn:aws:iam::111111111111:role/x"}}),
    ));
    assert_eq!(
        denied.to_string(),
        "step 2 (load): overrides.executionRoleArn \"arn:aws:iam::111111111111:role/x\" is not allowed \
         by SequencePolicy team-a: none is allowed"
    );
    let denied = denial(with(json!({"cluster": "team-b"})));
    assert_eq!(
        denied.to_string(),
        "step 2 (load): cluster \"team-b\" is not allowed by SequencePolicy team-a: one of \"team-a\""
    );
}

#[test]
fn unknown_fields_in_an_allow_list_are_refused() {
    let error = serde_json::from_value::<Allowed>(json!({"cluster": ["a"]})).unwrap_err();
    assert!(
        error.to_string().contains("unknown field `cluster`"),
        "{error}"
    );
}
