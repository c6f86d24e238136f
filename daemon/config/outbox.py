"""Config of the durable outbox: where it lives, how big it may grow, what happens when full."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from daemon.base.fields import Section, StateFile


class OutboxConfig(Section):
    """The durable outbox every outgoing message passes through (SNS, SQS, Kinesis)."""

    path: StateFile | None = None
    """SQLite file; unset: `outbox.sqlite3` in `runtime.state_dir`; `:memory:` keeps it in
    memory (tests only: nothing survives a restart)."""

    max_messages: int = Field(default=100_000, ge=1, le=10_000_000)
    """Most messages waiting for delivery."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=16 * 1024**3)
    """Most bytes of message bodies waiting for delivery."""

    full_policy: Literal["block", "drop_oldest"] = "block"
    """When full: `block` makes producers wait (up to `block_timeout`, then their put fails and
    they keep what they had: an SQS message is not acked, a CLI publish reports the error);
    `drop_oldest` deletes the oldest waiting messages, counted and logged."""

    block_timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds a producer waits for room under `block` before its put fails."""

    durability: Literal["full", "normal"] = "full"
    """`full` fsyncs every commit (survives power loss); `normal` survives a crash of the process
    but may lose the last commits on power loss. Commits are grouped, so `full` stays fast."""

    concurrency: int = Field(default=4, ge=1, le=64)
    """Destinations delivered to in parallel (one batch in flight per destination keeps order)."""

    retry_initial: float = Field(default=1.0, gt=0, le=600)
    """Seconds before retrying a destination after a retryable failure; doubles, with jitter."""

    retry_max: float = Field(default=300.0, gt=0, le=86_400)
    """Cap of the retry delay."""

    dead_letter_max: int = Field(default=10_000, ge=0, le=1_000_000)
    """Rejected messages kept for inspection (`awsd outbox --dead`); the oldest go first."""

    outcomes_kept: int = Field(default=10_000, ge=100, le=1_000_000)
    """Outcomes of delivered and dropped messages remembered (in memory and in the outbox
    file), so `GET /publish/<id>` and `awsd publish --wait` can say what became of a message;
    an id older than that answers `unknown`, never `delivered`."""

    min_free_bytes: int = Field(default=8 * 1024 * 1024, ge=0, le=1024**4)
    """Bytes that must stay free on the state directory's file system for the outbox to
    accept a message; below it, puts are refused ("state directory full", HTTP 507, exit 74)
    so that what was accepted can still be delivered and removed. 0: no threshold."""

    reserve_bytes: int = Field(default=1024 * 1024, ge=0, le=1024**3)
    """Size of the reserve file (`<outbox file>.reserve`) given up when the disk fills, so
    deliveries can still be recorded (it is allocated again once space returns). 0: none."""

    @model_validator(mode="after")
    def _retry_order(self) -> OutboxConfig:
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        return self
