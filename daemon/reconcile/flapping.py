"""Flapping detection: when the same fix keeps being undone, stop fixing and say so.

Another tool (a Terraform run, a console user, a Lambda "fixing" tags) that changes a resource
back after every reconcile pass turns two well-meaning controllers into an endless loop of API
calls and alerts. Like kopf's and Kubernetes' controllers, the reconciler notices: the same fix
(same resource, same attributes to the same values) applied `threshold` times within `window`
seconds marks the resource *contested*. A contested resource is still read and reported, but not
fixed, until it is seen in sync again, its declaration changes, or `window` seconds pass (then
the reconciler tries again, and contests again if the fight resumes).

Time is the event loop's monotonic clock, passed in by the caller, so tests drive it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Contest:
    """A resource the reconciler stopped fixing."""

    resource: str
    signature: str
    since: float
    fixes: int
    paths: tuple[str, ...]


class FlapTracker:
    def __init__(self, *, threshold: int, window: float) -> None:
        self.threshold = threshold
        self.window = window
        self._fixes: dict[str, deque[tuple[float, str]]] = {}
        self._contested: dict[str, Contest] = {}

    def record(
        self, resource: str, signature: str, paths: tuple[str, ...], now: float
    ) -> Contest | None:
        """Count one fix; return the Contest when this fix made the resource contested."""
        fixes = self._fixes.setdefault(resource, deque())
        fixes.append((now, signature))
        while fixes and fixes[0][0] < now - self.window:
            fixes.popleft()
        same = sum(1 for _, s in fixes if s == signature)
        if same >= self.threshold and resource not in self._contested:
            contest = Contest(resource, signature, now, same, paths)
            self._contested[resource] = contest
            return contest
        return None

    def contested(self, resource: str, now: float) -> Contest | None:
        """The contest on `resource`, unless there is none or it has expired."""
        contest = self._contested.get(resource)
        if contest is not None and now - contest.since >= self.window:
            self.clear(resource)
            return None
        return contest

    def clear(self, resource: str) -> None:
        """Seen in sync: forget its fixes and any contest."""
        self._fixes.pop(resource, None)
        self._contested.pop(resource, None)

    def active(self, now: float) -> list[Contest]:
        return [c for r in list(self._contested) if (c := self.contested(r, now)) is not None]
