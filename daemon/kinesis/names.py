"""What a reader's `stream` or `bucket` stands for in AWS, at run time.

A declared resource's logical name becomes its AWS name (`resources.name_template`, or its own
`name`; the account id is asked from STS only when the template uses it); an ARN stays an ARN
(a bucket ARN becomes the bucket name); anything else is taken as the AWS name itself (configs
loaded from files cannot hold one: `check-config` refuses undeclared names).
"""

from __future__ import annotations

from typing import Any

from daemon.config.resources import ResourceKind


async def physical(services: Any, kind: ResourceKind, value: str) -> str:
    config = services.config
    if value.startswith("arn:"):
        return value.split(":", 5)[5] if kind == "buckets" else value
    resources = config.resources
    declared = resources.of_kind(kind)
    if value not in declared:
        return value
    spec = declared[value]
    template = spec.name or resources.name_template
    account = "*"
    if "{account}" in template:
        sts = await services.clients.client("sts")
        account = str((await sts.get_caller_identity())["Account"])
    region = services.clients.region or "*"
    name: str = resources.physical_name(kind, value, env=config.env, region=region, account=account)
    return name
