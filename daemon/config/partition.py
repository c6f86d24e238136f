"""How a producer picks a Kinesis partition key: random, fixed, or a field of the JSON body.

One setting shared by everything that writes to a stream (readings, the `forward` handler), so a
key is chosen the same way wherever a record comes from; `daemon/outbox/producer.py` applies it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from daemon.base.fields import Section


class PartitionKeyConfig(Section):
    """How a producer picks a record's partition key (records of one key keep their order and
    land on one shard). A plain string is a fixed key."""

    source: Literal["random", "fixed", "field"] = "random"
    """`random` spreads records over all shards (no order between records); `fixed` uses
    `value`; `field` takes the value at `field` in the JSON body (random when it is missing)."""

    value: str | None = Field(default=None, min_length=1, max_length=256)
    """The key for `fixed`."""

    field: str | None = Field(default=None, min_length=1, max_length=256)
    """Dotted path in the JSON body for `field`, for example `device.id`."""

    @model_validator(mode="before")
    @classmethod
    def _a_string_is_a_fixed_key(cls, data: Any) -> Any:
        # `partition_key = "device-7"`: the short form of `{ source = "fixed", value = ... }`
        # (what `forward` took before the other sources existed).
        return {"source": "fixed", "value": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _complete(self) -> PartitionKeyConfig:
        if self.source == "fixed" and not self.value:
            raise ValueError("partition key source 'fixed' needs a value")
        if self.source == "field" and not self.field:
            raise ValueError("partition key source 'field' needs a field")
        return self
