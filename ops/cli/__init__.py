"""The ``agentlog`` command line.

Global options pick the event log (``--log URL``, env ``AGENTLOG_LOG``) and the data dir;
each subcommand's ``--help`` explains it with examples. Human output is tables; ``--json``
gives one JSON object per line for machines. Exit status: 0 ok, 1 an agentlog error (the
message says what and where), 2 a usage error.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
from pydantic import ValidationError

from ops.cli._context import CliContext, run_guarded
from ops.cli._demo import demo
from ops.cli._events import events
from ops.cli._schemas import schemas
from ops.cli._sequencer import sequencer
from ops.cli._state import COMMANDS as STATE_COMMANDS
from ops.settings import Settings

__all__ = ["cli", "main"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  agentlog demo                                   write and show a sample conversation
  agentlog events cat demo-1a2b                   a thread's events as a table
  agentlog --log sqlite:////var/lib/agentlog/log.db events tail
  agentlog schemas list                           the event types and their schemas
  agentlog state demo-1a2b                        a thread's memory, tasks, conversation
  agentlog state demo-1a2b --at 5                 ... as of seq 5 (or a time, an event id)
  agentlog rollback demo-1a2b --to 5 --reason "bad plan"
  agentlog conflicts                              memory keys waiting for a human
  agentlog --log kafka://127.0.0.1:9092 sequencer the Kafka log's sequencer, as a service
""",
)
@click.option(
    "--log",
    "log_url",
    envvar="AGENTLOG_LOG",
    metavar="URL",
    help="Event log to use: sqlite:///relative/path.db, sqlite:////absolute/path.db or "
    "kafka://HOST:PORT[,HOST:PORT]. [env AGENTLOG_LOG; default: sqlite in the data dir]",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="AGENTLOG_DATA_DIR",
    help="Folder for the embedded log. [env AGENTLOG_DATA_DIR; default ./.agentlog]",
)
@click.option("-v", "--verbose", count=True, help="Log what happens to stderr (-vv: debug).")
@click.version_option(package_name="agentlog")
@click.pass_context
def cli(ctx: click.Context, log_url: str | None, data_dir: Path | None, verbose: int) -> None:
    """agentlog: event-sourced state for multi-agent LLM systems.

    Every agent message and memory change is an Avro event appended to a log; thread
    state (memory, tasks, conversation) is rebuilt from it. These commands write, read
    and follow the log, show and time-travel thread state, roll back and fork threads,
    resolve memory conflicts, and verify or rebuild projections.
    """
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides: dict[str, object] = {}
    if log_url:
        overrides["log"] = log_url
    if data_dir:
        overrides["data_dir"] = data_dir
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise click.UsageError(f"bad setting: {problems}") from None
    ctx.obj = CliContext(settings)


cli.add_command(demo)
cli.add_command(events)
cli.add_command(schemas)
cli.add_command(sequencer)
for _command in STATE_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Entry point of the ``agentlog`` console script."""
    run_guarded(cli)
