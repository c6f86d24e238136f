"""A moto server of its own with IAM enforcement on, for tests of the generated IAM policy; and
what those tests share: recording every AWS call a component makes, naming the resource IAM
would check for it, and a test copy of `configs/local.toml` (every worker kind).

moto checks signatures and IAM policies once `INITIAL_NO_AUTH_ACTION_COUNT` calls have been
made. The server is started with that count set to the three calls that create an admin user
(CreateUser, PutUserPolicy, CreateAccessKey); from then on every call needs credentials, and the
test arranges and inspects the account as that admin, while the daemon runs as a user holding
only the policy under test.

What moto's enforcement covers, and what it cannot (moto/core/authorization.py,
moto/iam/access_control.py; moto 5.2), which `moto_view` adapts the policy to:

- **Actions: every service.** Each request is checked against the user's policies, for SNS,
  SQS, Kinesis, S3, DynamoDB, CloudWatch and CloudWatch Logs alike; a denied call gets an
  AccessDenied. But moto names the action after the *operation* and the *signing name*:
  `sqs:DeleteMessageBatch`, `sns:PublishBatch`, `monitoring:PutMetricData`, `s3:HeadBucket`,
  where IAM checks `sqs:DeleteMessage`, `sns:Publish`, `cloudwatch:PutMetricData`,
  `s3:ListBucket`. `moto_view` adds moto's names next to IAM's (from `daemon.core.iam`'s own
  operation map), so taking IAM's action away takes moto's name away too.
- **Resources: S3 and SQS only.** moto resolves the resource of a request for S3 (the bucket, or
  `bucket/key` for objects) and SQS (the queue's ARN, once the queue exists). Every other
  service's request is evaluated against `*`, which an ARN-scoped statement never matches, so
  `moto_view` widens those statements to `*` (their actions stay exactly as generated): for
  SNS, Kinesis, DynamoDB, CloudWatch and Logs the test proves the actions, not the ARNs. The
  ARNs are proven by the completeness tests instead (tests/iam/test_iam_completeness.py compares
  every call's resource with the policy). S3 and SQS statements keep their ARNs; because moto
  evaluates a call on a queue that does not exist yet (CreateQueue, GetQueueUrl while waiting
  for it) against `*`, those two SQS actions are also granted on `*` in moto's view.
- **Conditions: none.** moto never fills condition keys for a request, and treats a statement
  whose condition is not met as an explicit deny; `moto_view` drops conditions (the
  `cloudwatch:namespace` condition on PutMetricData is checked by the completeness tests).
- **Signatures over compressed bodies fail.** moto verifies a signature over the body after
  decompressing it, so a gzipped request (PutMetricData above 1 KiB, the log shipper's
  batches) gets SignatureDoesNotMatch; tests running under enforcement turn compression off.
- **Signatures of REST services are wrong in moto**: it recomputes SigV4 wrongly for Lambda, EFS
  and CloudFront requests (SignatureDoesNotMatch even for an administrator), so the server here
  is `tests.support.moto_iam`, which skips recomputing those three; their actions are checked.
- STS GetCallerIdentity is always allowed, as in AWS.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import tomli_w

from daemon.core.aws import AwsClients
from daemon.core.iam import action_for, allows, operations_for
from tests.support.moto_server import MotoServer
from tests.support.proc import REPO

SETUP_CALLS = 3
ADMIN_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}

# IAM action -> the extra names moto's S3 uses for the same calls (moto/s3/responses.py ACTION_MAP)
MOTO_S3_NAMES = {
    "s3:ListBucket": ["s3:HeadBucket"],
    "s3:GetEncryptionConfiguration": ["s3:ListBucket"],
    "s3:PutEncryptionConfiguration": ["s3:CreateBucket"],
    "s3:GetBucketPublicAccessBlock": ["s3:ListBucket", "s3:GetPublicAccessBlock"],
    "s3:PutBucketPublicAccessBlock": ["s3:CreateBucket", "s3:PutPublicAccessBlock"],
}
SQS_BEFORE_THE_QUEUE_EXISTS = ("sqs:CreateQueue", "sqs:GetQueueUrl")
_SIGNING_NAMES = {"cloudwatch": "monitoring"}


def moto_names(action: str) -> list[str]:
    """The names moto checks for an IAM action, besides the action itself."""
    prefix = action.split(":", 1)[0]
    names = list(MOTO_S3_NAMES.get(action, []))
    names += [f"{_SIGNING_NAMES.get(s, s)}:{op}" for s, op in operations_for(action)]
    if prefix in _SIGNING_NAMES:
        names.append(f"{_SIGNING_NAMES[prefix]}:{action.split(':', 1)[1]}")
    return names


def moto_view(document: dict[str, Any]) -> dict[str, Any]:
    """The policy as moto can evaluate it (see the module docstring)."""
    out = copy.deepcopy(document)
    extra: list[dict[str, Any]] = []
    for statement in out["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        statement.pop("Condition", None)
        statement["Action"] = sorted({*actions, *(n for a in actions for n in moto_names(a))})
        scoped = statement["Resource"] != "*"
        if scoped and all(a.startswith("sqs:") for a in actions):
            early = sorted(set(actions) & set(SQS_BEFORE_THE_QUEUE_EXISTS))
            if early:
                extra.append({"Effect": "Allow", "Action": early, "Resource": "*"})
        elif scoped and not all(a.startswith("s3:") for a in actions):
            statement["Resource"] = "*"
    out["Statement"] += extra
    return out


def without(document: dict[str, Any], *actions: str) -> dict[str, Any]:
    """The policy with `actions` taken out of every statement."""
    out = copy.deepcopy(document)
    for statement in out["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a not in actions]
    out["Statement"] = [s for s in out["Statement"] if s["Action"]]
    return out


# --- what a component calls, on what ------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    service: str
    """botocore's service name (`cloudwatch`, `logs`, ...)."""
    operation: str
    params: dict[str, Any]


class CallRecorder:
    """Every AWS call made through some `AwsClients`, with its parameters (botocore's
    `before-parameter-build` event, registered on the session so every client it makes has it)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def attach(self, clients: AwsClients) -> CallRecorder:
        clients._session.events.register("before-parameter-build", self._record)
        return self

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append(Call(model.service_model.service_name, model.name, dict(params)))

    def made(self, service: str, operation: str, **params: Any) -> list[Call]:
        return [
            c
            for c in self.calls
            if (c.service, c.operation) == (service, operation)
            and all(c.params.get(k) == v for k, v in params.items())
        ]


def request_resource(call: Call, *, region: str, account: str) -> tuple[str | None, dict[str, str]]:
    """The resource ARN IAM authorises `call` against (None: not worked out here, so only the
    action is checked) and the condition keys it sets that awsd's policies use."""
    if (call.service, call.operation) == ("cloudwatch", "PutMetricData"):
        return "*", {"cloudwatch:namespace": call.params["Namespace"]}
    resolve = _RESOURCE_OF.get(call.service)
    prefix = f"arn:aws:{call.service}:{region}:{account}:"
    return (resolve(call.operation, call.params, prefix) if resolve else None), {}


def _sqs(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    if "QueueUrl" in p:
        return prefix + p["QueueUrl"].rstrip("/").rsplit("/", 1)[-1]
    return prefix + p["QueueName"] if "QueueName" in p else None


def _sns(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    if "TopicArn" in p or "TargetArn" in p:
        return str(p.get("TopicArn") or p["TargetArn"])
    if "PhoneNumber" in p:
        return "*"
    return prefix + p["Name"] if operation == "CreateTopic" else None


def _kinesis(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    if "StreamARN" in p:
        return str(p["StreamARN"])
    return f"{prefix}stream/{p['StreamName']}" if "StreamName" in p else None


def _dynamodb(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    return f"{prefix}table/{p['TableName']}" if "TableName" in p else None


def _s3(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    if "Bucket" not in p:
        return None
    return f"arn:aws:s3:::{p['Bucket']}" + (f"/{p['Key']}" if "Key" in p else "")


def _logs(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    if "logGroupName" not in p:
        return None
    group = f"{prefix}log-group:{p['logGroupName']}"
    return f"{group}:log-stream:{p['logStreamName']}" if operation == "PutLogEvents" else group


def _cloudwatch(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    return f"{prefix}alarm:{p['AlarmName']}" if "AlarmName" in p else None


def _lambda(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    if "Resource" in p:  # tags
        return str(p["Resource"])
    name = p.get("FunctionName")
    if name is None:
        return None  # event source mappings by UUID: granted on `*`
    return name if name.startswith("arn:") else f"{prefix}function:{name}"


def _cloudfront(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    account = prefix.split(":")[4]
    if "Resource" in p:
        return str(p["Resource"])
    if operation in ("CreateInvalidation", "GetInvalidation"):
        return f"arn:aws:cloudfront::{account}:distribution/{p['DistributionId']}"
    if "OriginAccessControl" in operation:
        return None  # granted on `*`
    if "Id" in p:
        return f"arn:aws:cloudfront::{account}:distribution/{p['Id']}"
    return None


def _efs(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    base = prefix.replace(":efs:", ":elasticfilesystem:")
    resource = p.get("FileSystemId") or p.get("ResourceId")
    if resource and resource.startswith("fs-"):
        return f"{base}file-system/{resource}"
    if "AccessPointId" in p:
        return f"{base}access-point/{p['AccessPointId']}"
    return None


def _iam(operation: str, p: dict[str, Any], prefix: str) -> str | None:
    account = prefix.split(":")[4]
    # awsd's roles live under the path /awsd/ (daemon.resources.function_parts)
    return f"arn:aws:iam::{account}:role/awsd/{p['RoleName']}" if "RoleName" in p else None


_RESOURCE_OF = {
    "lambda": _lambda,
    "cloudfront": _cloudfront,
    "efs": _efs,
    "iam": _iam,
    "sqs": _sqs,
    "sns": _sns,
    "kinesis": _kinesis,
    "dynamodb": _dynamodb,
    "s3": _s3,
    "logs": _logs,
    "cloudwatch": _cloudwatch,
}


def disallowed(calls: list[Call], document: dict[str, Any], *, region: str, account: str) -> list:
    """The calls `document` does not allow: (service, operation, action, resource)."""
    out = []
    for call in calls:
        action = action_for(call.service, call.operation)
        if action is None:
            continue
        resource, context = request_resource(call, region=region, account=account)
        if not allows(document, action, resource, context):
            out.append((call.service, call.operation, action, resource))
    return sorted(set(out))


# --- configs/local.toml, for tests ---------------------------------------------------------------


def local_config(
    tmp_path: Path, endpoint: str, env: str, *, health_port: int = 0, **overrides: Any
) -> Path:
    """`configs/local.toml` (every worker kind) on `endpoint` instead of an embedded moto, in
    its own environment `env` (so its AWS names are its own), with short intervals."""
    data: dict[str, Any] = {
        "extends": str(REPO / "configs" / "local.toml"),
        "env": env,
        "aws": {"local": False, "endpoint_url": endpoint, "max_attempts": 2,
                "connect_timeout": 2.0, "read_timeout": 10.0},
        "log": {"level": "info", "format": "json", "cloudwatch": {"flush_interval": 0.3}},
        "health": {"port": health_port},
        "runtime": {"state_dir": str(tmp_path / "state"), "shutdown_timeout": 10.0,
                    "watch_config": False},
        # moto stores a distribution's Counts as that many data points, one by one: after a
        # denied minute the backlog takes it longer than the read timeout (AWS takes it at once).
        "metrics": {"flush_interval": 0.5, "histograms": "statistic_set"},
        "outbox": {"retry_initial": 0.2, "retry_max": 1.0},
        "custom": {"kinesis-demo": {"options": {"every": 0.3}}},
        "kinesis": {"readers": {"clicks": {
            "idle_interval": 0.2, "retry_max": 1.0,
            "archive": {"buffer_seconds": 0.5},
            "checkpoints": {"every_seconds": 0.5},
        }}},
        "sns": {"readings": {"load": {"interval": 0.3}}},
        "sqs": {"readings": {"wait_time_seconds": 1, "receive_backoff_max": 1.0}},
        "probes": {
            "defaults": {"interval": 0.5, "timeout": 0.3},
            "storm": {"group_window": 0.1},
            "endpoints": {"awsd-health": {"url": f"http://127.0.0.1:{health_port or 9}/healthz"}},
        },
        "resources": {"converge_timeout": 5.0},
    }  # fmt: skip
    _merge(data, overrides)
    path = tmp_path / f"{env}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def _merge(into: dict[str, Any], overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class IamMoto:
    def __init__(self) -> None:
        self.server = MotoServer(
            "tests.support.moto_iam", INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS)
        )
        self.url = self.server.url
        self.admin: dict[str, str] = {}

    def start(self) -> IamMoto:
        self.server.start()
        iam = self._client("iam", {"aws_access_key_id": "testing", "aws_secret_access_key": "x"})
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY)
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        return self

    def _client(self, service: str, credentials: dict[str, str]) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1", **credentials)

    def client(self, service: str) -> Any:
        """A client with the admin's credentials (for arranging and inspecting)."""
        return self._client(service, self.admin)

    def user(self, name: str, document: dict[str, Any]) -> dict[str, str]:
        """Create a user holding only `document`; return its credentials as environment."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        self.set_policy(name, document)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }

    def set_policy(self, name: str, document: dict[str, Any]) -> None:
        self.client("iam").put_user_policy(
            UserName=name, PolicyName="awsd", PolicyDocument=json.dumps(document)
        )

    def stop(self) -> None:
        self.server.stop()
