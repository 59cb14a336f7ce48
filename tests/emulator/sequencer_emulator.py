"""A local AWS for sequencer's tests and demo: moto's server plus a thin ECS extension.

moto (pinned, see install.sh) serves the real AWS wire protocols for ECS and S3. What real ECS does
and moto does not is added here, in front of moto's own WSGI app:

* clientToken idempotency: a RunTask repeating a (cluster, clientToken) pair seen in the last
  24 hours starts nothing and answers with the tasks the first call started, as AWS documents;
  with other parameters than the first call's, it answers 400 ConflictException whose
  resourceIds are those tasks.
* DescribeTasks answers MISSING for ARNs it does not know (moto answers nothing).
* StopTask sets stopCode UserInitiated and stoppedAt, and the containers' exit code 143 (SIGTERM).
  Stopping a stopped task changes nothing.
* Tasks stay where they are (moto's drift towards STOPPED on every describe is switched off) until
  - POST /_ext/ecs/finish-task finishes one with chosen exit codes, stopCode and reasons, or
  - its container environment (task definition, then overrides) has SEQ_EMU_SECONDS (and optionally SEQ_EMU_EXIT_CODE, a number or
    "none"; SEQ_EMU_STOP_CODE; SEQ_EMU_REASON): the emulated container then "runs" that long and
    exits so. This is the emulator's stand-in for a container image.
* Injected faults: POST /_ext/inject {"operation": "RunTask", "kind": "throttle" | "server-error" |
  "failures" | "error" | "lost-answer", "count": N, "reason": "...", "detail": "...", "status": S,
  "code": "..."} makes the next N calls of that operation fail that way ("failures" answers HTTP
  200 with failures[] and no task; "error" answers HTTP S with error code `code`, e.g. 400
  AccessDeniedException; "lost-answer" carries the call out, then answers HTTP S (default 500)
  with `code` (default InternalError), as when a connection drops after ECS acted).
* Eventual consistency, as real ECS shows it: POST /_ext/consistency {"listLagSeconds": s,
  "listLimit": n, "earlyMissingSeconds": s} makes ListTasks leave out tasks started less than s
  seconds ago, list at most n tasks per call (no nextToken: a partial answer), and DescribeTasks
  answer MISSING for tasks started less than s seconds ago. Zero or absent switches a lag off.
* Chaos, for the reliability run: POST /_ext/chaos {"throttle": p, "serverError": q, "seed": n,
  "outageSeconds": s} makes every ECS call, with probability p, answer ThrottlingException; with
  probability q, a 5xx with an error code ECS does not document (InternalFailure, ServiceUnavailable;
  for RunTask and StopTask half of these are "lost answers": the call takes effect first); and for
  the next s seconds, every call answer 503 ServiceUnavailable (an outage). The answer, and GET
  /_ext/chaos, count the faults served so far.
* Container behaviour by attempt: SEQ_EMU_FAIL_ATTEMPTS=k in the container environment makes
  attempts 1..k (the RunTask tag sequencer.dev/attempt) exit with SEQ_EMU_EXIT_CODE or 1, and later
  attempts exit 0: a step that succeeds on a retry.
* GET /_ext/calls lists every ECS call (operation, the access key that signed it, cluster, startedBy,
  clientToken, the whole request) for assertions such as "RunTask was called once per startedBy".
  POST /_ext/reset clears the extension's state.
* STS is moto's; each of its calls is listed in /_ext/calls too (service "sts": the signing key,
  roleArn, roleSessionName, externalId, session tags, and the access key moto handed out), so that a
  test can tell which role signed an ECS call. /_ext/inject takes AssumeRole (kind "error" with a
  status and code, e.g. 403 AccessDenied), answered as STS's XML error.
* S3 is moto's; each request is listed in /_ext/calls too (service "s3", operation the HTTP method,
  the path, the signing key).
* A task gets one container per container definition (moto makes one, from the first).
* POST /_ext/ecs/forget-task {"task": ARN} makes ECS forget a task (it then answers MISSING).
* CloudWatch Logs is moto's (ECS there writes no log lines: tests write them, into the stream the
  task definition's awslogs options name). Its calls are listed in /_ext/calls too (service "logs",
  with the signing key), and
  /_ext/inject takes its operations (e.g. {"operation": "GetLogEvents", "kind": "error", "code":
  "AccessDeniedException"}, or, for these operations only, "kind": "slow" with "seconds": s, which
  answers s seconds late).

Usage: python sequencer_emulator.py [--host 127.0.0.1] [--port 0]
Prints one line "sequencer-emulator listening on http://HOST:PORT" once it accepts connections.
"""

import argparse
import copy
import io
import json
import random
import re
import sys
import threading
import urllib.parse
import time
import uuid
from datetime import datetime, timezone

from moto.ecs.models import ecs_backends
from moto.moto_api import state_manager
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

ECS_TARGET = "AmazonEC2ContainerServiceV20141113."
LOGS_TARGET = "Logs_20140328."
TOKEN_WINDOW_SECONDS = 24 * 3600
SIGTERM_EXIT = 143


def now_utc():
    return datetime.now(timezone.utc)


class Extension:
    def __init__(self, app):
        self.app = app
        self.lock = threading.RLock()
        self.reset()

    def reset(self):
        self.tokens = {}  # (cluster, clientToken) -> (arns, monotonic time)
        self.calls = []
        self.injections = []
        self.started = {}  # task arn -> monotonic time of RunTask
        self.forgotten = set()
        self.consistency = {}
        self.attempts = {}  # task arn -> the sequencer.dev/attempt tag of its RunTask
        self.chaos = {}
        self.chaos_random = random.Random(0)
        self.outage_until = 0.0
        self.chaos_counts = {"throttle": 0, "server-error": 0, "lost-answer": 0, "outage": 0}

    # ----- WSGI entry -----------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_ext/"):
            with self.lock:
                return self.control(path, environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith(LOGS_TARGET):
            return self.logs(target[len(LOGS_TARGET):], environ, start_response)
        if target.startswith(ECS_TARGET):
            body = read_body(environ)
            with self.lock:
                return self.ecs(target[len(ECS_TARGET):], body, environ, start_response)
        service, access_key = signing_scope(environ)
        if service == "sts":
            return self.sts(access_key, environ, start_response)
        if service == "s3":
            with self.lock:
                self.calls.append({
                    "operation": environ.get("REQUEST_METHOD"), "service": "s3", "path": path,
                    "accessKey": access_key, "time": time.time(),
                })
        return self.app(environ, start_response)

    # ----- STS: moto's, with each AssumeRole and the key it handed out listed in /_ext/calls -------

    def sts(self, access_key, environ, start_response):
        form = urllib.parse.parse_qs(read_body(environ).decode("utf-8", "replace"))
        first = lambda key: (form.get(key) or [None])[0]
        tags = {}
        n = 1
        while first(f"Tags.member.{n}.Key") is not None:
            tags[first(f"Tags.member.{n}.Key")] = first(f"Tags.member.{n}.Value")
            n += 1
        with self.lock:
            injected = self.take_injection(first("Action"))
        if injected is not None and injected[0] != "slow":
            status, error = injected if injected[0] != "lost-answer" else injected[1]
            with self.lock:
                self.calls.append({
                    "operation": first("Action"), "service": "sts", "accessKey": access_key,
                    "roleSessionName": first("RoleSessionName"), "injected": error["__type"],
                    "time": time.time(),
                })
            body = (f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                    f'<Type>Sender</Type><Code>{error["__type"]}</Code>'
                    f'<Message>{error["message"]}</Message></Error>'
                    f'<RequestId>sequencer-emulator</RequestId></ErrorResponse>').encode()
            start_response(f"{status} Error", [("Content-Type", "text/xml"),
                                               ("Content-Length", str(len(body)))])
            return [body]
        answer = {}

        def capture(status, headers, exc_info=None):
            answer["status"] = status
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        handed_out = re.search(rb"<AccessKeyId>([^<]+)</AccessKeyId>", body)
        with self.lock:
            self.calls.append({
                "operation": first("Action"), "service": "sts", "accessKey": access_key,
                "roleArn": first("RoleArn"), "roleSessionName": first("RoleSessionName"),
                "externalId": first("ExternalId"), "tags": tags,
                "assumedAccessKey": handed_out.group(1).decode() if handed_out else None,
                "time": time.time(),
            })
        return [body]

    # ----- CloudWatch Logs: moto's, with the calls counted and faults injectable -------------------

    def logs(self, operation, environ, start_response):
        with self.lock:
            self.calls.append({"operation": operation, "service": "logs",
                               "accessKey": signing_scope(environ)[1], "time": time.time()})
            injected = self.take_injection(operation)
        if injected is not None and injected[0] == "slow":
            time.sleep(injected[1])  # outside the lock: other calls go on meanwhile
        elif injected is not None and injected[0] != "lost-answer":
            return respond(start_response, *injected)
        return self.app(environ, start_response)

    # ----- ECS ------------------------------------------------------------------------------------

    def ecs(self, operation, body, environ, start_response):
        request = parse_json(body)
        self.calls.append({
            "operation": operation,
            "accessKey": signing_scope(environ)[1],
            "cluster": request.get("cluster"),
            "startedBy": request.get("startedBy"),
            "clientToken": request.get("clientToken"),
            "request": request,
            "time": time.time(),
        })
        injected = self.take_injection(operation)
        if injected is None:
            injected = self.take_chaos(operation)
        lost = None
        if injected is not None and injected[0] == "lost-answer":
            lost = injected[1]
        elif injected is not None:
            return respond(start_response, *injected)
        self.autopilot()
        if lost is not None:
            # Carry the call out, then lose its answer.
            self.ecs_call(operation, request, body, environ, lambda *args, **kwargs: None)
            return respond(start_response, *lost)
        return self.ecs_call(operation, request, body, environ, start_response)

    def young(self, arn, seconds):
        """Whether a task was started less than `seconds` ago (eventual consistency windows)."""
        return bool(seconds) and time.monotonic() - self.started.get(arn, 0) < float(seconds)

    def ecs_call(self, operation, request, body, environ, start_response):
        if operation == "RunTask":
            return self.run_task(request, body, environ, start_response)
        if operation == "DescribeTasks":
            status, payload = self.forward(environ, body)
            if status == 200:
                wanted = request.get("tasks") or []
                early = self.consistency.get("earlyMissingSeconds")
                payload["tasks"] = [
                    t for t in payload.get("tasks", [])
                    if t.get("taskArn") not in self.forgotten and not self.young(t.get("taskArn"), early)
                ]
                known = {t.get("taskArn") for t in payload["tasks"]}
                known_ids = {arn.rsplit("/", 1)[-1] for arn in known}
                payload["failures"] = [
                    {"arn": arn, "reason": "MISSING"}
                    for arn in wanted
                    if arn not in known and arn.rsplit("/", 1)[-1] not in known_ids
                ]
            return respond(start_response, status, payload)
        if operation == "ListTasks":
            status, payload = self.forward(environ, body)
            if status == 200:
                lag = self.consistency.get("listLagSeconds")
                arns = [a for a in payload.get("taskArns", []) if a not in self.forgotten and not self.young(a, lag)]
                limit = int(self.consistency.get("listLimit") or 0)
                payload["taskArns"] = arns[:limit] if limit > 0 else arns
            return respond(start_response, status, payload)
        if operation == "StopTask":
            task = find_task(request.get("task", ""))
            if task is None or task.task_arn in self.forgotten:
                return respond(start_response, 400, {
                    "__type": "InvalidParameterException",
                    "message": "The referenced task was not found.",
                })
            if task.last_status == "STOPPED":
                return respond(start_response, 200, {"task": self.describe_one(environ, task.task_arn)})
            status, payload = self.forward(environ, body)
            if status == 200:
                finish(task, exit_codes={None: SIGTERM_EXIT}, stop_code="UserInitiated",
                       reason=request.get("reason") or "Task stopped by user", container_reason=None)
                payload = {"task": self.describe_one(environ, task.task_arn)}
            return respond(start_response, status, payload)
        status, payload = self.forward(environ, body)
        return respond(start_response, status, payload)

    def run_task(self, request, body, environ, start_response):
        token = request.get("clientToken")
        key = (cluster_name(request.get("cluster")), token)
        asked = json.dumps({k: v for k, v in request.items() if k != "clientToken"}, sort_keys=True)
        if token and key in self.tokens:
            arns, at, first = self.tokens[key]
            if time.monotonic() - at < TOKEN_WINDOW_SECONDS:
                if asked != first:
                    return respond(start_response, 400, {
                        "__type": "ConflictException",
                        "message": "The clientToken is already in use with a different RunTask request.",
                        "resourceIds": arns,
                    })
                tasks = [self.describe_one(environ, arn) for arn in arns]
                return respond(start_response, 200, {"tasks": [t for t in tasks if t], "failures": []})
        status, payload = self.forward(environ, body)
        if status == 200:
            arns = [t["taskArn"] for t in payload.get("tasks", [])]
            attempt = next((t.get("value") for t in request.get("tags") or []
                            if t.get("key") == "sequencer.dev/attempt"), None)
            for arn in arns:
                self.started[arn] = time.monotonic()
                if attempt is not None:
                    self.attempts[arn] = attempt
                task = find_task(arn)
                if task is not None:
                    stamp = now_utc()
                    task.created_at = stamp
                    task.started_at = stamp
                    one_container_per_definition(task)
            if token:
                self.tokens[key] = (arns, time.monotonic(), asked)
            payload = {"tasks": [self.describe_one(environ, a) for a in arns], "failures": payload.get("failures", [])}
        return respond(start_response, status, payload)

    def take_injection(self, operation):
        for injection in self.injections:
            if injection["operation"] == operation and injection["count"] > 0:
                injection["count"] -= 1
                kind = injection["kind"]
                if kind == "throttle":
                    return 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
                if kind == "server-error":
                    return 500, {"__type": "ServerException", "message": "Service unavailable (injected)"}
                if kind == "error":
                    return int(injection.get("status", 400)), {
                        "__type": injection.get("code", "AccessDeniedException"),
                        "message": injection.get("reason") or "injected error",
                    }
                if kind == "slow":
                    return "slow", float(injection.get("seconds", 5))
                if kind == "lost-answer":
                    return "lost-answer", (int(injection.get("status", 500)), {
                        "__type": injection.get("code", "InternalError"),
                        "message": "the connection dropped after the call took effect (injected)",
                    })
                if kind == "failures":
                    failure = {"reason": injection.get("reason", "RESOURCE:MEMORY")}
                    if injection.get("detail"):
                        failure["detail"] = injection["detail"]
                    if injection.get("arn"):
                        failure["arn"] = injection["arn"]
                    return 200, {"tasks": [], "failures": [failure]}
        return None

    def take_chaos(self, operation):
        """A fault drawn at random under /_ext/chaos, or None."""
        if time.monotonic() < self.outage_until:
            self.chaos_counts["outage"] += 1
            return 503, {"__type": "ServiceUnavailable", "message": "outage (injected)"}
        draw = self.chaos_random.random()
        throttle = float(self.chaos.get("throttle") or 0)
        server_error = float(self.chaos.get("serverError") or 0)
        if draw < throttle:
            self.chaos_counts["throttle"] += 1
            return 400, {"__type": "ThrottlingException", "message": "Rate exceeded (injected)"}
        if draw < throttle + server_error:
            code = self.chaos_random.choice(["InternalFailure", "ServiceUnavailable"])
            status = 503 if code == "ServiceUnavailable" else 500
            payload = {"__type": code, "message": "injected 5xx"}
            if operation in ("RunTask", "StopTask") and self.chaos_random.random() < 0.5:
                self.chaos_counts["lost-answer"] += 1
                return "lost-answer", (status, payload)
            self.chaos_counts["server-error"] += 1
            return status, payload
        return None

    def autopilot(self):
        """Finishes tasks whose emulated container has run its SEQ_EMU_SECONDS."""
        for task in all_tasks():
            if task.last_status == "STOPPED" or task.task_arn not in self.started:
                continue
            env = container_environment(task)
            if "SEQ_EMU_SECONDS" not in env:
                continue
            try:
                seconds = float(env["SEQ_EMU_SECONDS"])
            except ValueError:
                seconds = 0.0
            if time.monotonic() - self.started[task.task_arn] < seconds:
                continue
            code_text = env.get("SEQ_EMU_EXIT_CODE", "0").strip().lower()
            code = None if code_text in ("none", "") else int(code_text)
            if "SEQ_EMU_FAIL_ATTEMPTS" in env:
                failing = int(env["SEQ_EMU_FAIL_ATTEMPTS"])
                attempt = int(self.attempts.get(task.task_arn) or 1)
                code = (code or 1) if attempt <= failing else 0
            stop_code = env.get("SEQ_EMU_STOP_CODE", "EssentialContainerExited")
            reason = env.get("SEQ_EMU_REASON", "Essential container in task exited")
            finish(task, exit_codes={None: code}, stop_code=stop_code, reason=reason, container_reason=None)

    def forward(self, environ, body, target=None):
        """Passes a request to moto and returns (status, JSON payload)."""
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        env["CONTENT_LENGTH"] = str(len(body))
        if target:
            env["HTTP_X_AMZ_TARGET"] = ECS_TARGET + target
        captured = {}

        def start(status, headers, exc_info=None):
            captured["status"] = int(status.split(" ", 1)[0])
            return lambda data: None

        chunks = self.app(env, start)
        raw = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        status = captured.get("status", 500)
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"__type": "ServerException", "message": raw.decode("utf-8", "replace")[:500]}

    def describe_one(self, environ, arn):
        task = find_task(arn)
        cluster = task.cluster_name if task is not None else None
        body = json.dumps({"cluster": cluster, "tasks": [arn], "include": ["TAGS"]}).encode()
        # Advance nothing: moto's describe calls task.advance(), a no-op with the frozen transition.
        status, payload = self.forward(environ, body, target="DescribeTasks")
        tasks = payload.get("tasks", []) if status == 200 else []
        return tasks[0] if tasks else None

    # ----- control --------------------------------------------------------------------------------

    def control(self, path, environ, start_response):
        request = parse_json(read_body(environ))
        if path == "/_ext/health":
            return respond(start_response, 200, {"status": "ok"})
        if path == "/_ext/reset":
            self.reset()
            return respond(start_response, 200, {"status": "ok"})
        if path == "/_ext/calls":
            return respond(start_response, 200, {"calls": self.calls})
        if path == "/_ext/inject":
            kind = request.get("kind")
            kinds = ("throttle", "server-error", "failures", "error", "lost-answer", "slow")
            if kind not in kinds or not request.get("operation"):
                return respond(start_response, 400, {"error": f"need operation and kind {'|'.join(kinds)}"})
            self.injections.append({**request, "count": int(request.get("count", 1))})
            return respond(start_response, 200, {"status": "ok"})
        if path == "/_ext/consistency":
            self.consistency = dict(request)
            return respond(start_response, 200, {"status": "ok"})
        if path == "/_ext/chaos":
            if environ.get("REQUEST_METHOD") == "POST":
                self.chaos = dict(request)
                self.chaos_random = random.Random(request.get("seed", 0))
                outage = float(request.get("outageSeconds") or 0)
                self.outage_until = time.monotonic() + outage if outage > 0 else 0.0
            return respond(start_response, 200, {"counts": self.chaos_counts})
        if path == "/_ext/ecs/finish-task":
            task = find_task(request.get("task", ""))
            if task is None:
                return respond(start_response, 404, {"error": f"no task {request.get('task')!r}"})
            codes = request.get("exitCodes")
            exit_codes = dict(codes) if isinstance(codes, dict) else {None: request.get("exitCode")}
            finish(task, exit_codes=exit_codes, stop_code=request.get("stopCode", "EssentialContainerExited"),
                   reason=request.get("reason", "Essential container in task exited"),
                   container_reason=request.get("containerReason"))
            return respond(start_response, 200, {"taskArn": task.task_arn})
        if path == "/_ext/ecs/forget-task":
            task = find_task(request.get("task", ""))
            if task is None:
                return respond(start_response, 404, {"error": "no such task"})
            self.forgotten.add(task.task_arn)
            return respond(start_response, 200, {"taskArn": task.task_arn})
        return respond(start_response, 404, {"error": f"unknown extension path {path}"})


# ----- helpers over moto's models ---------------------------------------------------------------------

def all_tasks():
    for _account, regions in list(ecs_backends.items()):
        for _region, backend in list(regions.items()):
            for cluster_tasks in list(backend.tasks.values()):
                yield from list(cluster_tasks.values())


def find_task(arn_or_id):
    wanted = (arn_or_id or "").rsplit("/", 1)[-1]
    for task in all_tasks():
        if task.task_arn == arn_or_id or task.id == wanted:
            return task
    return None


def cluster_name(cluster):
    return (cluster or "default").rsplit("/", 1)[-1]


def container_environment(task):
    """The emulated container's environment: the task definition's, then the overrides'."""
    env = {}
    try:
        definition = task._backend.describe_task_definition(task.task_definition_arn)
        for container in definition.container_definitions or []:
            for pair in container.get("environment", []) or []:
                if "name" in pair:
                    env[pair["name"]] = str(pair.get("value", ""))
    except Exception:  # a deregistered definition: only the overrides remain
        pass
    for override in (task.overrides or {}).get("containerOverrides", []) or []:
        for pair in override.get("environment", []) or []:
            if "name" in pair:
                env[pair["name"]] = str(pair.get("value", ""))
    return env


def one_container_per_definition(task):
    """moto gives a task one container, made from the first container definition; ECS gives it one
    per definition. The others are added, as copies of moto's with their own definition's fields."""
    try:
        definition = task._backend.describe_task_definition(task.task_definition_arn)
    except Exception:
        return
    definitions = definition.container_definitions or []
    if len(definitions) <= 1 or len(task.containers) != 1:
        return
    first = task.containers[0]
    containers = [first]
    for d in definitions[1:]:
        c = copy.copy(first)
        c.container_arn = f"{definition.arn}/{uuid.uuid4()}"
        c.name = d.get("name")
        c.image = d.get("image")
        c.cpu = d.get("cpu", 0)
        c.memory = d.get("memory")
        c.environment = d.get("environment")
        c.command = d.get("command")
        c.network_interfaces = []
        containers.append(c)
    task.containers = containers


def finish(task, exit_codes, stop_code, reason, container_reason):
    """Stops a task as ECS would report it. exit_codes maps container name (None: any) to a code."""
    stamp = now_utc()
    task.last_status = "STOPPED"
    task.desired_status = "STOPPED"
    task.stopped_reason = reason
    task.stop_code = stop_code
    task.stopping_at = stamp
    task.stopped_at = stamp
    if not getattr(task, "started_at", None):
        task.started_at = stamp
    for container in task.containers:
        name = getattr(container, "name", None)
        code = exit_codes.get(name, exit_codes.get(None))
        container.last_status = "STOPPED"
        if code is None:
            if hasattr(container, "exitCode"):
                del container.exitCode
        else:
            container.exitCode = int(code)
        if container_reason:
            container.reason = container_reason


def signing_scope(environ):
    """The service and access key a SigV4 Authorization header names (None, None without one)."""
    found = re.search(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/aws4_request",
                      environ.get("HTTP_AUTHORIZATION", ""))
    return (found.group(2), found.group(1)) if found else (None, None)


def read_body(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def parse_json(body):
    try:
        value = json.loads(body or b"{}")
        return value if isinstance(value, dict) else {}
    except ValueError:
        return {}


def respond(start_response, status, payload):
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}
    data = json.dumps(payload, default=str).encode()
    start_response(f"{status} {reasons.get(status, 'Status')}", [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("Content-Length", str(len(data))),
        ("x-amzn-RequestId", "sequencer-emulator"),
    ])
    return [data]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # Tasks move only when told to (see the module docstring); /moto-api/reset keeps this setting.
    state_manager.set_transition(model_name="ecs::task", transition={"progression": "manual", "times": 10**9})
    app = Extension(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    host, port = server.server_address[:2]
    print(f"sequencer-emulator listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
