"""What one reconcile pass found and did, for logs, `/status` and metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PassResult:
    """What one pass found and did."""

    at: float
    """Wall-clock time it started (for people)."""
    seconds: float
    leader: bool = True
    checked: int = 0
    drifted: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    """Drifted resources put back (enforce mode)."""
    applied: tuple[str, ...] = ()
    """Other changes made: creates, config changes, prunes."""
    failed: tuple[str, ...] = ()
    contested: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    error: str | None = None
    """The pass as a whole failed (AWS unreachable, no credentials)."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at)),
            "seconds": round(self.seconds, 3),
            "leader": self.leader,
            "checked": self.checked,
            "drifted": list(self.drifted),
            "fixed": list(self.fixed),
            "applied": list(self.applied),
            "failed": list(self.failed),
            "contested": list(self.contested),
            "blocked": list(self.blocked),
            "pending": list(self.pending),
            "error": self.error,
        }
