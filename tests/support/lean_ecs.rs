//! A lean ECS endpoint for the scale benchmark: the AWS JSON 1.1 protocol over HTTP on 127.0.0.1,
//! in memory, in the benchmark's own process, so that thousands of tasks measure the controller
//! and not the stand-in (the moto-based emulator saturates a core at that scale). It serves what
//! the controller calls: RunTask (clientToken idempotency as AWS documents it: the same token
//! answers the same tasks), DescribeTasks (at most 100 ARNs, MISSING for unknown ones), ListTasks
//! (by startedBy and desiredStatus), StopTask and DescribeTaskDefinition. Tasks of family `quick`
//! stop with exit code 0 a second after launch; all others run until `release`.
//!
//! With `push`, it also stands in for EventBridge and SQS (AWS JSON 1.0): a released task's
//! "ECS Task State Change" event goes to one queue, served by ReceiveMessage (long polling) and
//! DeleteMessageBatch, for the controller's `--task-events-queue-url`.
//!
//! It also answers STS AssumeRole (the benchmark's roles mode), with credentials for an hour.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const QUICK_SECONDS: f64 = 1.0;
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

#[derive(Clone)]
pub struct LeanEcs {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    /// A message was queued: long polls waiting answer at once.
    queued: Arc<tokio::sync::Notify>,
}

/// One call as the benchmark counts it.
#[derive(Clone, Debug)]
pub struct Call {
    pub operation: String,
    pub time: f64,
    /// DescribeTasks: the ARNs asked for; RunTask: the startedBy.
    pub arns: usize,
    pub started_by: Option<String>,
    /// RunTask: whether the token was new (a task was created).
    pub created: bool,
}

#[derive(Default)]
struct State {
    tasks: HashMap<String, Task>,
    by_token: HashMap<String, Vec<String>>,
    calls: Vec<Call>,
    /// ARN → when DescribeTasks last reported it.
    described: HashMap<String, f64>,
    next_id: u64,
    /// Whether released tasks' events are queued (push mode).
    push: bool,
    /// The queue's messages not yet received (bodies), and those received but not deleted.
    queue: VecDeque<String>,
    in_flight: HashMap<String, String>,
    /// Messages received and deleted.
    received: usize,
    deleted: usize,
}

#[derive(Clone)]
struct Task {
    arn: String,
    cluster: String,
    definition: String,
    family: String,
    started_by: Option<String>,
    tags: Value,
    created: f64,
    stop: Option<(f64, i32, &'static str, String)>,
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

impl LeanEcs {
    pub async fn start() -> LeanEcs {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the lean ECS");
        let address = listener.local_addr().expect("address");
        let state = Arc::new(Mutex::new(State::default()));
        let queued = Arc::new(tokio::sync::Notify::new());
        let (shared, notify) = (state.clone(), queued.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (state, queued) = (shared.clone(), notify.clone());
            async move {
                if operation(&headers) == "ReceiveMessage" {
                    receive_message(&state, &queued, &body).await
                } else if body.starts_with(b"Action=AssumeRole") {
                    assume_role(&state, &body)
                } else {
                    answer(&state, &headers, &body)
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        LeanEcs {
            endpoint: format!("http://{address}"),
            state,
            queued,
        }
    }

    /// Push mode: from now on a released task's state change goes to the queue at `queue_url()`.
    pub fn push(&self) {
        self.lock().push = true;
    }

    pub fn queue_url(&self) -> String {
        format!("{}/{ACCOUNT}/ecs-task-events", self.endpoint)
    }

    /// Messages received by the controller and deleted by it.
    pub fn messages(&self) -> (usize, usize) {
        let state = self.lock();
        (state.received, state.deleted)
    }

    fn queue_events(&self, state: &mut State, arns: &[String], t: f64) {
        if !state.push {
            return;
        }
        for arn in arns {
            if let Some(task) = state.tasks.get(arn) {
                let mut detail = task.to_json(t);
                detail["version"] = json!(3);
                let event = json!({
                    "version": "0", "id": format!("event-{arn}"),
                    "detail-type": "ECS Task State Change", "source": "aws.ecs",
                    "account": ACCOUNT, "region": REGION, "resources": [arn],
                    "detail": detail,
                });
                state.queue.push_back(event.to_string());
            }
        }
        self.queued.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// Tasks created so far.
    pub fn task_count(&self) -> usize {
        self.lock().tasks.len()
    }

    /// Stops every running task of `family` now, exit code 0; returns the time.
    pub fn release(&self, family: &str) -> f64 {
        let t = now();
        let mut state = self.lock();
        let mut stopped = Vec::new();
        for task in state.tasks.values_mut() {
            if task.family == family && task.stop.is_none() {
                task.stop = Some((
                    t,
                    0,
                    "EssentialContainerExited",
                    "Essential container in task exited".into(),
                ));
                stopped.push(task.arn.clone());
            }
        }
        self.queue_events(&mut state, &stopped, t);
        t
    }

    /// Stops up to `count` running tasks of `family` now, exit code 0; returns their startedBy
    /// and the time.
    pub fn release_some(&self, family: &str, count: usize) -> Vec<(String, f64)> {
        let t = now();
        let mut state = self.lock();
        let mut released = Vec::new();
        let mut stopped = Vec::new();
        for task in state.tasks.values_mut() {
            if released.len() == count {
                break;
            }
            if task.family == family && task.stop.is_none() {
                task.stop = Some((
                    t,
                    0,
                    "EssentialContainerExited",
                    "Essential container in task exited".into(),
                ));
                released.push((task.started_by.clone().unwrap_or_default(), t));
                stopped.push(task.arn.clone());
            }
        }
        self.queue_events(&mut state, &stopped, t);
        released
    }

    /// The running tasks of `family` not described since `since`.
    pub fn undescribed_since(&self, family: &str, since: f64) -> usize {
        let state = self.lock();
        let t = now();
        state
            .tasks
            .values()
            .filter(|task| task.family == family && !task.stopped(t))
            .filter(|task| state.described.get(&task.arn).is_none_or(|d| *d < since))
            .count()
    }
}

impl Task {
    fn stopped(&self, t: f64) -> bool {
        self.stop.as_ref().is_some_and(|(at, ..)| *at <= t)
    }

    fn to_json(&self, t: f64) -> Value {
        let stopped = self.stop.as_ref().filter(|(at, ..)| *at <= t);
        let mut container = json!({"name": "app", "lastStatus": if stopped.is_some() { "STOPPED" } else { "RUNNING" }});
        let mut task = json!({
            "taskArn": self.arn,
            "clusterArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{}", self.cluster),
            "taskDefinitionArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{}", self.definition),
            "lastStatus": if stopped.is_some() { "STOPPED" } else { "RUNNING" },
            "desiredStatus": if stopped.is_some() { "STOPPED" } else { "RUNNING" },
            "launchType": "FARGATE",
            "createdAt": self.created,
            "startedAt": self.created,
            "tags": self.tags,
        });
        if let Some(started_by) = &self.started_by {
            task["startedBy"] = json!(started_by);
        }
        if let Some((at, exit, code, reason)) = stopped {
            container["exitCode"] = json!(exit);
            task["stoppedAt"] = json!(at);
            task["stopCode"] = json!(code);
            task["stoppedReason"] = json!(reason);
        }
        task["containers"] = json!([container]);
        task
    }
}

fn operation(headers: &HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned()
}

/// SQS ReceiveMessage with long polling: up to MaxNumberOfMessages at once, else waits for one
/// until WaitTimeSeconds.
async fn receive_message(
    state: &Mutex<State>,
    queued: &tokio::sync::Notify,
    body: &[u8],
) -> Response {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let max = request["MaxNumberOfMessages"]
        .as_u64()
        .unwrap_or(1)
        .clamp(1, 10) as usize;
    let wait = Duration::from_secs(request["WaitTimeSeconds"].as_u64().unwrap_or(0).min(20));
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let notified = queued.notified();
        let messages: Vec<Value> = {
            let mut state = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let take = max.min(state.queue.len());
            let bodies: Vec<String> = state.queue.drain(..take).collect();
            state.received += bodies.len();
            bodies
                .into_iter()
                .map(|body| {
                    state.next_id += 1;
                    let handle = format!("receipt-{}", state.next_id);
                    state.in_flight.insert(handle.clone(), body.clone());
                    json!({"MessageId": format!("message-{}", state.next_id), "ReceiptHandle": handle, "Body": body})
                })
                .collect()
        };
        if !messages.is_empty() || tokio::time::Instant::now() >= deadline {
            return (
                [("content-type", "application/x-amz-json-1.0")],
                json!({"Messages": messages}).to_string(),
            )
                .into_response();
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

fn delete_message_batch(state: &mut State, request: &Value) -> Value {
    let mut successful = Vec::new();
    for entry in request["Entries"].as_array().into_iter().flatten() {
        let handle = entry["ReceiptHandle"].as_str().unwrap_or_default();
        if state.in_flight.remove(handle).is_some() {
            state.deleted += 1;
        }
        successful.push(json!({"Id": entry["Id"]}));
    }
    json!({"Successful": successful, "Failed": []})
}

fn answer(state: &Mutex<State>, headers: &HeaderMap, body: &[u8]) -> Response {
    let operation = operation(headers);
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let t = now();
    let result = match operation.as_str() {
        "RunTask" => run_task(&mut state, &request, t),
        "DescribeTasks" => Ok(describe_tasks(&mut state, &request, t)),
        "ListTasks" => Ok(list_tasks(&mut state, &request, t)),
        "StopTask" => stop_task(&mut state, &request, t),
        "DescribeTaskDefinition" => Ok(describe_task_definition(&request)),
        "DeleteMessageBatch" => Ok(delete_message_batch(&mut state, &request)),
        other => Err(format!("the lean ECS does not serve {other:?}")),
    };
    match result {
        Ok(value) => (
            [("content-type", "application/x-amz-json-1.1")],
            value.to_string(),
        )
            .into_response(),
        Err(message) => (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/x-amz-json-1.1")],
            json!({"__type": "InvalidParameterException", "message": message}).to_string(),
        )
            .into_response(),
    }
}

/// STS AssumeRole (the query protocol): credentials for an hour, the session name recorded in
/// the call's `started_by`.
fn assume_role(state: &Mutex<State>, body: &[u8]) -> Response {
    let form = String::from_utf8_lossy(body);
    let session = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("RoleSessionName="))
        .unwrap_or_default()
        .to_owned();
    let mut state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    state.next_id += 1;
    let key = format!("ASIALEAN{:012}", state.next_id);
    state.calls.push(Call {
        operation: "AssumeRole".into(),
        time: now(),
        arns: 0,
        started_by: Some(session),
        created: true,
    });
    let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let xml = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>lean</SecretAccessKey>\
         <SessionToken>lean-token</SessionToken><Expiration>{}</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROALEAN:x</AssumedRoleId><Arn>arn:aws:sts::{ACCOUNT}:assumed-role/bench/x</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>lean</RequestId></ResponseMetadata></AssumeRoleResponse>",
        expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    );
    ([("content-type", "text/xml")], xml).into_response()
}

fn string(request: &Value, key: &str) -> Option<String> {
    request[key].as_str().map(str::to_owned)
}

fn run_task(state: &mut State, request: &Value, t: f64) -> Result<Value, String> {
    let cluster = string(request, "cluster").unwrap_or_else(|| "default".into());
    let definition = string(request, "taskDefinition").ok_or("taskDefinition is required")?;
    let started_by = string(request, "startedBy");
    let token = string(request, "clientToken");
    let known = token.as_ref().and_then(|k| state.by_token.get(k)).cloned();
    state.calls.push(Call {
        operation: "RunTask".into(),
        time: t,
        arns: 0,
        started_by: started_by.clone(),
        created: known.is_none(),
    });
    let arns = match known {
        Some(arns) => arns,
        None => {
            let count = request["count"].as_u64().unwrap_or(1).clamp(1, 10);
            let family = definition.split(':').next().unwrap_or_default().to_owned();
            let mut arns = Vec::new();
            for _ in 0..count {
                state.next_id += 1;
                let arn = format!(
                    "arn:aws:ecs:{REGION}:{ACCOUNT}:task/{cluster}/{:032x}",
                    state.next_id
                );
                let stop = (family == "quick").then(|| {
                    (
                        t + QUICK_SECONDS,
                        0,
                        "EssentialContainerExited",
                        "Essential container in task exited".to_owned(),
                    )
                });
                state.tasks.insert(
                    arn.clone(),
                    Task {
                        arn: arn.clone(),
                        cluster: cluster.clone(),
                        definition: definition.clone(),
                        family: family.clone(),
                        started_by: started_by.clone(),
                        tags: request["tags"].clone(),
                        created: t,
                        stop,
                    },
                );
                arns.push(arn);
            }
            if let Some(token) = token {
                state.by_token.insert(token, arns.clone());
            }
            arns
        }
    };
    let tasks: Vec<Value> = arns
        .iter()
        .filter_map(|a| state.tasks.get(a))
        .map(|task| task.to_json(t))
        .collect();
    Ok(json!({"tasks": tasks, "failures": []}))
}

fn describe_tasks(state: &mut State, request: &Value, t: f64) -> Value {
    let arns: Vec<String> = request["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    state.calls.push(Call {
        operation: "DescribeTasks".into(),
        time: t,
        arns: arns.len(),
        started_by: None,
        created: false,
    });
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for arn in arns.iter().take(100) {
        match state.tasks.get(arn) {
            Some(task) => tasks.push(task.to_json(t)),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
        state.described.insert(arn.clone(), t);
    }
    json!({"tasks": tasks, "failures": failures})
}

fn list_tasks(state: &mut State, request: &Value, t: f64) -> Value {
    let started_by = string(request, "startedBy");
    let cluster = string(request, "cluster").unwrap_or_else(|| "default".into());
    let want_stopped = request["desiredStatus"].as_str() == Some("STOPPED");
    state.calls.push(Call {
        operation: "ListTasks".into(),
        time: t,
        arns: 0,
        started_by: started_by.clone(),
        created: false,
    });
    let arns: Vec<&String> = state
        .tasks
        .values()
        .filter(|task| task.cluster == cluster)
        .filter(|task| started_by.is_none() || task.started_by == started_by)
        .filter(|task| task.stopped(t) == want_stopped)
        .map(|task| &task.arn)
        .collect();
    json!({"taskArns": arns})
}

fn stop_task(state: &mut State, request: &Value, t: f64) -> Result<Value, String> {
    let arn = string(request, "task").ok_or("task is required")?;
    state.calls.push(Call {
        operation: "StopTask".into(),
        time: t,
        arns: 1,
        started_by: None,
        created: false,
    });
    let task = state
        .tasks
        .get_mut(&arn)
        .ok_or("The referenced task was not found.")?;
    if task.stop.is_none() {
        let reason = string(request, "reason").unwrap_or_else(|| "Task stopped by user".into());
        task.stop = Some((t, 143, "UserInitiated", reason));
    }
    Ok(json!({"task": task.to_json(t)}))
}

fn describe_task_definition(request: &Value) -> Value {
    let definition = string(request, "taskDefinition").unwrap_or_default();
    let family = definition.split(':').next().unwrap_or_default();
    json!({"taskDefinition": {
        "taskDefinitionArn": format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{definition}"),
        "family": family, "revision": 1,
        "containerDefinitions": [{"name": "app", "essential": true}]
    }})
}
