"""The `command` handler: run a program per record, the record on its stdin; exit 0 = success.

For people who would rather write a shell script than Python: the program gets the body (or a
JSON document describing the record) on stdin and AWSD_RECORD_* variables, runs in its own
process group without a shell (unless asked), and is killed with its children at the timeout or
when the source cancels the handler (its own timeout, a shutdown).
"""

from __future__ import annotations

from typing import Any

from daemon.config.handlers import CommandHandlerConfig
from daemon.core.logs import get_logger
from daemon.core.programs import program_env, run_program
from daemon.handlers.base import Handler, HandlerError, Record
from daemon.handlers.document import record_json


class CommandHandler(Handler):
    def __init__(self, cfg: CommandHandlerConfig, log: Any = None, *, name: str = "") -> None:
        self.cfg = cfg
        self.log = log or get_logger()
        self.name = name or "command"
        self.env = program_env(cfg.env, pass_aws_credentials=cfg.pass_aws_credentials)

    async def handle(self, record: Record) -> None:
        stdin = record_json(record) if self.cfg.stdin == "record" else record.body
        env = {
            **self.env,
            "AWSD_RECORD_ID": record.id,
            "AWSD_RECORD_KIND": record.kind,
            "AWSD_RECORD_SOURCE": record.source,
        }
        try:
            result = await run_program(
                self.cfg.command,
                stdin=stdin,
                timeout=self.cfg.timeout,
                env=env,
                cwd=self.cfg.cwd,
                shell=self.cfg.shell,
                max_output=self.cfg.max_output,
            )
        except OSError as exc:
            raise HandlerError(
                f"cannot run {self.cfg.command[0]!r}: {exc.strerror or exc}"
            ) from None
        if not result.ok:
            raise HandlerError(f"{self.cfg.command[0]} {result.describe()}")
        if result.stdout or result.stderr:
            self.log.debug(
                "command output",
                id=record.id,
                stdout=result.stdout.decode("utf-8", "replace"),
                stderr=result.stderr.decode("utf-8", "replace"),
            )
