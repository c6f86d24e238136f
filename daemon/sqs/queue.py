"""Finding the queue to poll: its URL (waiting for a queue that does not exist yet) and the
visibility timeout to ask for."""

from __future__ import annotations

from typing import Any, Protocol

from daemon.base.awserrors import describe_error, error_code
from daemon.base.retry import Attempts, Backoff
from daemon.config.messaging import SqsPollerConfig
from daemon.core.aws import AwsClients
from daemon.core.targets import Targets
from daemon.worker import WorkerContext

DEFAULT_VISIBILITY = 30
MISSING_QUEUE = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)


class SetupState(Protocol):
    state: str
    last_error: str | None


class QueueSetup:
    """Resolves one poller's queue, retrying with backoff until it works or the poller stops."""

    def __init__(
        self,
        cfg: SqsPollerConfig,
        *,
        clients: AwsClients,
        targets: Targets,
        ctx: WorkerContext,
        report: SetupState,
    ) -> None:
        self.cfg = cfg
        self.clients = clients
        self.targets = targets
        self.ctx = ctx
        self.report = report
        """Where the poller shows its state and last error (health)."""

    def _attempts(self) -> Attempts:
        return Attempts(Backoff(self.cfg.receive_backoff, self.cfg.receive_backoff_max))

    async def url(self) -> str | None:
        """The queue URL; waits (with backoff) for a queue that does not exist yet."""
        ref = await self.targets.aws_name("queues", self.cfg.queue)
        if ref.startswith(("https://", "http://")):
            return ref
        request = {"QueueName": ref}
        if ref.startswith("arn:"):  # arn:aws:sqs:region:account:name
            _, _, _, _, account, name = ref.split(":", 5)
            request = {"QueueName": name, "QueueOwnerAWSAccountId": account}
        failures = self._attempts()
        while not self.ctx.stopping:
            try:
                sqs = await self.clients.client("sqs")
                response = await sqs.get_queue_url(**request)
                return str(response["QueueUrl"])
            except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
                if not await self._failed(exc, failures, "resolving the queue URL"):
                    return None
        return None

    async def visibility(self, url: str) -> int | None:
        """The visibility timeout to ask for; warns when failures could never reach a DLQ."""
        failures = self._attempts()
        response: dict[str, Any] | None = None
        while not self.ctx.stopping and response is None:
            try:
                sqs = await self.clients.client("sqs")
                response = await sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
                )
            except Exception as exc:  # noqa: BLE001 - retried until it works or we stop
                if not await self._failed(exc, failures, "reading queue attributes"):
                    return None
        if response is None:
            return None
        attributes = response.get("Attributes", {})
        if "RedrivePolicy" not in attributes:
            self.ctx.log.info(
                "queue has no redrive policy: a message that keeps failing is retried until "
                "the queue's retention period ends",
                queue=url,
                on_failure=self.cfg.on_failure,
            )
        queue_visibility = int(attributes.get("VisibilityTimeout", DEFAULT_VISIBILITY) or 0)
        return self.cfg.visibility_timeout or queue_visibility or DEFAULT_VISIBILITY

    async def _failed(self, exc: Exception, failures: Attempts, doing: str) -> bool:
        self.report.last_error = describe_error(exc)
        missing = error_code(exc) in MISSING_QUEUE
        self.report.state = "waiting for the queue" if missing else "backing off after errors"
        delay = failures.next_delay()
        self.ctx.log.warning(
            "queue does not exist (yet); waiting for it" if missing else f"{doing} failed",
            queue=self.cfg.queue,
            error=self.report.last_error,
            retry_in_s=round(delay, 3),
        )
        return await self.ctx.sleep(delay)
