"""Writing down what became of messages, also when the disk refuses to take it.

A batch's fate (delivered, dead, retried) is one transaction on the outbox file. On a full disk
the ledger gives up the outbox's reserve file (`space.py`) and tries once more; failing that, it
keeps the fates in memory (`unrecorded`): those messages are settled for the rest of the process
and never taken for sending again, and `repair` writes them once the disk takes writes. Only a
restart before that can send them once more (the file still holds them as waiting).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.base.files import is_disk_full
from daemon.core.logs import get_logger
from daemon.core.storage import StateDirFull, StateHealth
from daemon.outbox.outcomes import MessageStatus
from daemon.outbox.space import Headroom
from daemon.outbox.store import Store

log = get_logger()

Key = tuple[str, str]
Run = Callable[..., Awaitable[Any]]
"""The outbox's way to run a function on its one SQLite thread."""


class Ledger:
    """The outbox's settled messages on their way to the file (see the module docstring)."""

    def __init__(self, store_name: str, path: str, *, headroom: Headroom, health: StateHealth):
        self.store_name = store_name
        self.path = path
        self.headroom = headroom
        self.health = health
        self.unrecorded: dict[int, tuple[Key, MessageStatus]] = {}

    def skip(self, key: Key) -> set[int]:
        """Ids of `key` settled in memory only: never to be taken again."""
        return {i for i, (k, _) in self.unrecorded.items() if k == key}

    async def write(
        self,
        run: Run,
        store: Store,
        key: Key,
        settled: list[MessageStatus],
        retry: dict[int, str],
        *,
        keep_dead: int,
        keep_outcomes: int,
    ) -> tuple[int, float | None] | None:
        """Write a batch's fate; (dead letters trimmed, oldest waiting) or None when it stays
        in memory."""

        def write(with_retry: dict[int, str]) -> tuple[int, float | None]:
            trimmed = store.settle(
                settled, with_retry, keep_dead=keep_dead, keep_outcomes=keep_outcomes
            )
            return trimmed, store.oldest_created()

        try:
            result: tuple[int, float | None] = await run(write, retry)
            return result
        except (sqlite3.Error, OSError) as exc:
            if not (is_disk_full(exc) and await run(self.headroom.release)):
                self._keep(key, settled, exc)
                return None
        try:  # with the reserve's space; attempt counts are not worth it now
            result = await run(write, {})
            return result
        except (sqlite3.Error, OSError) as exc:
            self._keep(key, settled, exc)
            return None

    def _keep(self, key: Key, settled: list[MessageStatus], exc: BaseException) -> None:
        for status in settled:
            self.unrecorded[status.id] = (key, status)
        self.health.failed(self.store_name, self.path, exc)
        if settled:
            log.error(
                "outbox cannot record settled messages; kept in memory, never sent again",
                destination=f"{key[0]}:{key[1]}",
                messages=len(settled),
                unrecorded=len(self.unrecorded),
                error=str(exc),
            )

    async def repair(self, run: Run, store: Store, *, keep_dead: int, keep_outcomes: int) -> bool:
        """Write what the disk refused (or prove the file takes writes), allocate the reserve,
        check the intake threshold; True when all of it worked."""
        pending = list(self.unrecorded.values())

        def write() -> None:
            self.headroom.check_intake()
            if pending:
                statuses = [status for _, status in pending]
                store.settle(statuses, {}, keep_dead=keep_dead, keep_outcomes=keep_outcomes)
            else:
                store.touch()
            self.headroom.ensure_reserve()

        try:
            await run(write)
        except (sqlite3.Error, OSError, StateDirFull) as exc:
            self.health.failed(self.store_name, self.path, exc)
            return False
        for _, status in pending:
            self.unrecorded.pop(status.id, None)
        if pending:
            log.info("outbox recorded the messages the disk had refused", messages=len(pending))
        return True
