"""The resources Kinesis readers use, in the reference registry (`daemon.config.references`):
a reader's `stream` and its archive's `bucket` name declared resources by logical name (or are
ARNs), so `check-config` reports an undeclared one, `awsd plan` shows who uses what, and the IAM
policy is scoped to them. The lease table is the reader's own (created on demand), not declared.
"""

from __future__ import annotations

from daemon.config.models import Config
from daemon.config.references import REFERENCES, ResourceRef


def _references(config: Config) -> list[ResourceRef]:
    refs = []
    for name, reader in config.kinesis.readers.items():
        user = f"kinesis:{name}"
        path = f"kinesis.readers.{name}"
        refs.append(ResourceRef("streams", reader.stream, f"{path}.stream", user))
        if reader.archive is not None:
            refs.append(
                ResourceRef("buckets", reader.archive.bucket, f"{path}.archive.bucket", user)
            )
    return refs


REFERENCES.append(_references)
