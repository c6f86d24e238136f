"""Configuration errors as values: every problem names its file, its field path and the reason.

The loader collects all problems it can find before giving up, so an operator fixes a broken file
in one round instead of one error per `systemctl reload`.
"""

from __future__ import annotations

from dataclasses import dataclass

EX_CONFIG = 78  # sysexits.h: configuration error; systemd and init scripts know this code


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem: where (file and dotted field path, either may be empty) and why."""

    source: str
    path: str
    reason: str

    def __str__(self) -> str:
        where = self.source or "<config>"
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


class ConfigError(Exception):
    """The configuration cannot be used; `issues` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__(self.render())

    @classmethod
    def one(cls, source: str, reason: str, path: str = "") -> ConfigError:
        return cls([ConfigIssue(source, path, reason)])

    def render(self) -> str:
        count = len(self.issues)
        head = f"configuration invalid ({count} error{'s' if count != 1 else ''}):"
        return "\n".join([head, *(f"  {issue}" for issue in self.issues)])
