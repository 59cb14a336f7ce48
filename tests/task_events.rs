//! Push updates through the real binary: an EventBridge rule on ECS "Task State Change" events
//! delivers to an SQS queue (moto's events and SQS, the rule's pattern applied by moto), and the
//! controller, told the queue, describes a task as soon as an event names it, while the poll of
//! tasks no event names slows to the safety-net interval. moto's ECS emits no events, so the test
//! puts them, as ECS would, after finishing the task in the emulator.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::world::*;

const QUEUE: &str = "ecs-task-events";
const RULE: &str = "sequencer-task-stops";

/// A queue, and a rule sending it every ECS task stop (the pattern the guide documents).
async fn queue_with_rule(world: &World) -> (aws_sdk_sqs::Client, String) {
    let sqs = aws_sdk_sqs::Client::new(&world.emu.sdk_config().await);
    let url = sqs
        .create_queue()
        .queue_name(QUEUE)
        .send()
        .await
        .expect("create the queue")
        .queue_url
        .expect("a queue URL");
    let pattern = json!({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
                         "detail": {"lastStatus": ["STOPPED"]}});
    world.emu.aws_json(
        "events",
        "AWSEvents.PutRule",
        &json!({"Name": RULE, "EventPattern": pattern.to_string()}),
    );
    world.emu.aws_json(
        "events",
        "AWSEvents.PutTargets",
        &json!({"Rule": RULE, "Targets": [{"Id": "queue",
                "Arn": format!("arn:aws:sqs:us-east-1:123456789012:{QUEUE}")}]}),
    );
    (sqs, url)
}

/// What ECS would send when `task_arn` reaches `status`.
fn task_event(world: &World, task_arn: &str, status: &str, version: i64) {
    let detail = json!({
        "taskArn": task_arn,
        "clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/etl",
        "lastStatus": status, "desiredStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "containers": [{"name": "app", "exitCode": 0, "lastStatus": status}],
        "version": version,
    });
    let answer = world.emu.aws_json(
        "events",
        "AWSEvents.PutEvents",
        &json!({"Entries": [{"Source": "aws.ecs", "DetailType": "ECS Task State Change",
                "Resources": [task_arn], "Detail": detail.to_string()}]}),
    );
    assert_eq!(answer["FailedEntryCount"], 0, "{answer}");
}

fn task_events(log: &std::path::Path, outcome: &str) -> f64 {
    let (_, text) = http_get(&http_address(log), "/metrics");
    metric(
        &text,
        &format!("sequencer_task_events_total{{outcome=\"{outcome}\"}}"),
    )
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_stop_starts_the_next_step_without_waiting_for_the_poll() {
    let world = World::start().await;
    let (sqs, queue_url) = queue_with_rule(&world).await;
    // The Sequence asks for a look every second (World::create); push mode's safety net of 600 s
    // overrides it, so only an event can make the controller notice a stop within the test.
    let (controller, log) = world.controller_with(&[
        "--task-events-queue-url",
        &queue_url,
        "--task-events-poll-interval",
        "600",
    ]);
    world
        .create(
            "pushed",
            json!([step("first", "slow"), step("second", "slow")]),
        )
        .await;
    let launched = |count: usize| {
        let emu = &world.emu;
        async move || emu.calls_of("RunTask").len() >= count
    };
    wait_until(
        "the first step launched",
        Duration::from_secs(60),
        launched(1),
    )
    .await;
    // Its first look (at once, when the launch is recorded) is all the poll does.
    wait_until(
        "the first task described",
        Duration::from_secs(30),
        async || !world.emu.calls_of("DescribeTasks").is_empty(),
    )
    .await;
    let first = world.emu.task_arns("etl").await;
    assert_eq!(first.len(), 1);

    // Hints that are no hints: a message that is not an event, and a task nobody watches.
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("{\"hello\": \"world\"}")
        .send()
        .await
        .expect("send a stray message");
    task_event(
        &world,
        "arn:aws:ecs:us-east-1:123456789012:task/etl/00000000000000000000000000000000",
        "STOPPED",
        4,
    );
    // The event pattern filters on STOPPED: a RUNNING event never reaches the queue.
    task_event(&world, &first[0], "RUNNING", 2);

    world
        .emu
        .finish_task(&first[0], Some(0), "EssentialContainerExited", "done");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let described = world.emu.calls_of("DescribeTasks").len();
    assert_eq!(
        world.emu.calls_of("RunTask").len(),
        1,
        "a stop no event told of waits for the safety-net poll"
    );

    task_event(&world, &first[0], "STOPPED", 3);
    wait_until(
        "the second step launched after the pushed stop",
        Duration::from_secs(30),
        launched(2),
    )
    .await;
    assert!(world.emu.calls_of("DescribeTasks").len() > described);
    // A repeat of the same event is skipped: as a duplicate while the poller still holds the
    // stopped task, or as unwatched once it has let the task go (its Sequence has seen the stop);
    // which of the two depends on whether a poll round came first, never on the event.
    let skipped = || task_events(&log, "duplicate") + task_events(&log, "unwatched");
    let before = skipped();
    task_event(&world, &first[0], "STOPPED", 3);
    wait_until("the repeat counted", Duration::from_secs(30), async || {
        skipped() > before
    })
    .await;
    assert!(
        task_events(&log, "described") <= 1.0,
        "the repeat was described again"
    );

    let second: Vec<String> = world
        .emu
        .task_arns("etl")
        .await
        .into_iter()
        .filter(|arn| !first.contains(arn))
        .collect();
    assert_eq!(second.len(), 1);
    world
        .emu
        .finish_task(&second[0], Some(0), "EssentialContainerExited", "done");
    task_event(&world, &second[0], "STOPPED", 3);
    world
        .wait_condition("pushed", "Complete", Duration::from_secs(30))
        .await;

    assert_eq!(world.emu.calls_of("RunTask").len(), 2);
    assert!(task_events(&log, "described") >= 2.0);
    assert_eq!(task_events(&log, "malformed"), 1.0);
    assert_eq!(task_events(&log, "unwatched"), 1.0);
    // Every message was deleted once handled: nothing waits and nothing is in flight.
    wait_until("the queue emptied", Duration::from_secs(30), async || {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        let count = |name: aws_sdk_sqs::types::QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages) == 0
            && count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                == 0
    })
    .await;
    stop(controller);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_its_queue_the_controller_goes_on_polling() {
    let world = World::start().await;
    let missing = format!("{}/123456789012/no-such-queue", world.emu.endpoint);
    let (controller, log) = world.controller_with(&[
        "--task-events-queue-url",
        &missing,
        "--task-events-poll-interval",
        "2",
    ]);
    world
        .create(
            "polled",
            json!([step("first", "quick"), step("second", "quick")]),
        )
        .await;
    world
        .wait_condition("polled", "Complete", Duration::from_secs(90))
        .await;
    assert_eq!(world.emu.calls_of("RunTask").len(), 2);
    wait_until("the failure counted", Duration::from_secs(30), async || {
        task_events(&log, "receive_failed") >= 1.0
    })
    .await;
    let warned = log_lines(&log).iter().any(|line: &Value| {
        line["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot receive ECS task state changes"))
    });
    assert!(warned, "the failing queue is logged");
    stop(controller);
}
