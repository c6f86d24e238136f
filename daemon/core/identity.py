"""Who this daemon is, for names and dimensions: `{env}`, `{hostname}`, `{instance_id}`.

The CloudWatch Logs stream, the log group and the default metric dimensions are templates over
these three. The instance id comes from IMDSv2 on EC2 and falls back to the hostname elsewhere
(a Raspberry Pi, a laptop, `aws.local`), so a template is always filled; it is looked up once per
process, in the background, so startup never waits for a metadata service that is not there.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Identity:
    env: str
    hostname: str
    instance_id: str

    def expand(self, template: str) -> str:
        return template.format(env=self.env, hostname=self.hostname, instance_id=self.instance_id)


_instance_id: str | None = None


def hostname() -> str:
    # The short name: what `hostname` prints and what people call the machine.
    return socket.gethostname().split(".")[0] or "localhost"


async def resolve(env: str, *, ask_imds: bool) -> Identity:
    """The identity of this process; `ask_imds` false skips the metadata service (local AWS)."""
    global _instance_id  # noqa: PLW0603 - one lookup per process (two racing ones agree)
    host = hostname()
    if not ask_imds:
        return Identity(env, host, host)
    if _instance_id is None:
        from daemon.core.aws import imds_get  # noqa: PLC0415 - names need no AWS stack

        _instance_id = await imds_get("instance-id") or host
    return Identity(env, host, _instance_id)


def needs_instance_id(*templates: str) -> bool:
    return any("{instance_id}" in t for t in templates)
