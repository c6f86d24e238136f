"""`forward` to a Lambda function: an asynchronous invocation (`InvocationType=Event`) through
the outbox, so the source acks once the outbox holds it and an outage (a function not there
yet) delays the event but never loses it."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from typing import Any

import pytest

from daemon.handlers import build_handler
from daemon.outbox.sender import InvalidMessage
from daemon.outbox.senders.lambda_ import MAX_ASYNC_PAYLOAD, LambdaSender, lambda_message
from tests.handlers.test_forward_command import Services, forward, record
from tests.support.iam import CallRecorder
from tests.support.messaging import Harness, unique
from tests.support.observe import wait_until

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


def make_function(boto: Any, name: str) -> str:
    role = boto("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zipped:
        zipped.writestr("app.py", "def handler(event, context):\n    return event\n")
    made = boto("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
    )
    return str(made["FunctionArn"])


@pytest.fixture
async def services() -> Any:
    s = Services()
    yield s
    await s.outbox.close()


async def test_the_event_is_the_json_body_a_json_string_or_the_record(services: Any):
    as_body = build_handler(forward(function="ingest"), services, name="sqs:in")
    await as_body.handle(record(b'{"t": 1}'))
    await as_body.handle(record(b"plain text"))
    await as_body.handle(record(b"\xff\x00"))
    described = build_handler(forward(function="ingest", payload="record"), services)
    await described.handle(record(b'{"t": 2}'))
    items = await services.outbox.take(("lambda", "ingest"), 10, 1 << 20)
    events = [json.loads(i.body["payload"]) for i in items]
    assert events[:3] == [{"t": 1}, "plain text", base64.b64encode(b"\xff\x00").decode()]
    assert events[3]["id"] == "rec-1" and events[3]["data"] == {"t": 2}
    assert items[0].origin == "sqs:in"


def test_payloads_lambda_would_refuse_are_refused_when_accepted():
    assert LambdaSender.validate("f", lambda_message({"a": 1})) == len('{"a":1}')
    for body, reason in (
        ({}, "non-empty string"),
        ({"payload": "not json"}, "not JSON"),
        ({"payload": json.dumps("x" * MAX_ASYNC_PAYLOAD)}, "at most"),
    ):
        with pytest.raises(InvalidMessage, match=reason):
            LambdaSender.validate("f", body)
    with pytest.raises(ValueError, match="function or url"):
        forward()


async def test_forward_to_a_function_invokes_it_asynchronously_and_waits_out_its_absence(
    harness: Harness, boto: Any
):
    name = unique("fn")
    config = harness.config(
        sqs={"x": {"queue": unique("none"), "handler": {"kind": "forward", "function": name}}}
    )
    services = await harness.start(config)
    recorder = CallRecorder().attach(services.clients)
    handler = build_handler(config.sqs["x"].handler, services)
    await handler.handle(record(b'{"reading": 21.5}'))  # the function does not exist yet
    await wait_until(lambda: recorder.made("lambda", "Invoke"))
    assert services.outbox.count == 1  # refused (not found), kept, retried
    arn = make_function(boto, name)
    await wait_until(lambda: services.outbox.count == 0, timeout=15)
    calls = recorder.made("lambda", "Invoke", FunctionName=name)
    assert {c.params["InvocationType"] for c in calls} == {"Event"}
    assert json.loads(calls[-1].params["Payload"]) == {"reading": 21.5}
    assert arn.endswith(f":function:{name}")
