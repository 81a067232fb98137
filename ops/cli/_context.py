"""What every CLI command shares: settings, opening the log, and error reporting."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import anyio
import click

from eventstore import EventStoreError, ThreadInfo
from eventstore.port import EventLog
from ops.settings import Settings
from ops.wiring import ConfigError, open_log
from projections import ProjectionError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class CliContext:
    """Settings read once at the top of the command."""

    settings: Settings

    def log(self, *, writes: bool = True) -> EventLog:
        """The configured event log, not yet opened; ``writes=False`` for a command that
        only reads (on Kafka it then never joins the sequencer group)."""
        return open_log(self.settings, writes=writes)


def fail(message: str) -> NoReturn:
    """Stop the command with exit status 1 and ``message`` on stderr."""
    raise click.ClickException(message)


def run(func: Callable[[], Awaitable[T]]) -> T:
    """Run an async command body, turning agentlog errors into clean CLI errors."""
    try:
        return anyio.run(func)
    except (EventStoreError, ProjectionError, ConfigError) as exc:
        fail(str(exc))


def run_guarded(command: click.Command) -> None:
    """Run the click command; Ctrl-C ends quietly with status 130."""
    try:
        command.main(prog_name="agentlog")
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        sys.exit(130)


async def all_threads(log: EventLog) -> list[ThreadInfo]:
    """Every thread in the log, in id order (the log lists them a page at a time)."""
    found: list[ThreadInfo] = []
    after = ""
    while batch := await log.threads(after=after):
        found.extend(batch)
        after = batch[-1].thread_id
    return found
