"""A moto server of its own with IAM enforcement on, for tests of the generated IAM policy.

moto checks signatures and IAM policies once `INITIAL_NO_AUTH_ACTION_COUNT` calls have been
made. The server is started with that count set to the three calls that create an admin user
(CreateUser, PutUserPolicy, CreateAccessKey); from then on every call needs credentials, and the
test arranges and inspects the account as that admin, while the daemon runs as a user holding
only the policy under test.

moto's enforcement is narrower than IAM's (see moto/core/responses.py and
moto/iam/access_control.py): it resolves the resource of a request only for S3 (bucket ARNs)
and SQS (the queue's ARN, once the queue exists); every other request is evaluated against `*`,
which an ARN-scoped statement never matches. `moto_view` therefore widens the resources of
statements for other services to `*` (their actions stay exactly as generated), and keeps S3's
ARN scoping, so actions are checked for every service and resources for S3. It also adds the
names moto gives some calls that differ from IAM's (`s3:HeadBucket`, `monitoring:*` for
CloudWatch, ...).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import boto3

from tests.support.moto_server import MotoServer

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


def moto_view(document: dict[str, Any]) -> dict[str, Any]:
    """The policy as moto can evaluate it (see the module docstring)."""
    out = copy.deepcopy(document)
    for statement in out["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        if all(a.startswith("s3:") for a in actions):
            extra = [alias for a in actions for alias in MOTO_S3_NAMES.get(a, [])]
            statement["Action"] = sorted(set(actions) | set(extra))
        else:
            statement["Resource"] = "*"
            # moto names CloudWatch actions after the endpoint ("monitoring"), IAM "cloudwatch".
            monitoring = [f"monitoring:{a[11:]}" for a in actions if a.startswith("cloudwatch:")]
            statement["Action"] = sorted(set(actions) | set(monitoring))
    return out


def without(document: dict[str, Any], action: str) -> dict[str, Any]:
    out = copy.deepcopy(document)
    for statement in out["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != action]
    out["Statement"] = [s for s in out["Statement"] if s["Action"]]
    return out


class IamMoto:
    def __init__(self) -> None:
        self.server = MotoServer(INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS))
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
