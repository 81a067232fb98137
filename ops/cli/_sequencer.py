"""``agentlog sequencer``: a sequencer of the Kafka log, run as a service."""

from __future__ import annotations

import dataclasses
import gc
import signal
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit

import anyio
import click

from eventstore.kafka import KafkaEventLog, SequencerStatus
from ops.cli._context import CliContext, fail, run
from ops.cli._render import err, out, print_json
from ops.wiring import open_log


def _show(status: SequencerStatus, as_json: bool, what: str) -> None:
    at = datetime.now(UTC).isoformat(timespec="seconds")
    if as_json:
        print_json({"at": at, "what": what, **dataclasses.asdict(status)})
    else:
        owned = ",".join(map(str, status.partitions)) or "none"
        out.print(
            f"{at}  {what:<8} partitions {owned:<16} rounds {status.rounds:>8}  "
            f"accepted {status.accepted:>9}  duplicates {status.duplicates:>6}  "
            f"rejected {status.rejected:>6}",
            markup=False,
        )
    sys.stdout.flush()


@click.command(
    epilog="""\b
Examples:
  agentlog --log kafka://127.0.0.1:9092 sequencer              run one (Ctrl-C stops)
  agentlog --log kafka://127.0.0.1:9092 sequencer --every 5 --json
  AGENTLOG_KAFKA__SEQUENCER=false agentlog --log kafka://127.0.0.1:9092 events append ...
                                        a client that leaves sequencing to the service
"""
)
@click.option(
    "--every",
    "every",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="Print what it has done every SECONDS.",
)
@click.option("--json", "as_json", is_flag=True, help="Status lines as JSON objects.")
@click.pass_obj
def sequencer(ctx: CliContext, every: float, as_json: bool) -> None:
    """Run a sequencer of the Kafka log until stopped (Ctrl-C or SIGTERM).

    On Kafka an append is a command; a member of the sequencer consumer group decides it:
    each member owns some partitions, is the single writer of their threads, checks
    expected versions and writes the accepted events. Every process that opens the log
    with the setting kafka.sequencer=true (the default) is such a member while it runs.
    In a deployment, run one or more of these beside the agents and give the agents
    AGENTLOG_KAFKA__SEQUENCER=false: partitions spread over the running sequencers, a
    stopped one's partitions move to the others, and short-lived processes never make the
    group rebalance (commands that only read never join it anyway).

    It prints a status line when its partitions are assigned, every SECONDS, and when it
    stops: partitions owned, rounds decided, commands accepted, retried (duplicates) and
    rejected since it started.
    """
    url = ctx.settings.log_url()
    if urlsplit(url).scheme != "kafka":
        fail(
            f"agentlog sequencer runs on a Kafka log (--log kafka://HOST:PORT), not {url}; "
            "the embedded log orders its appends itself"
        )
    kafka = ctx.settings.kafka.model_copy(update={"sequencer": True})
    settings = ctx.settings.model_copy(update={"kafka": kafka})

    async def body() -> None:
        log = open_log(settings)
        assert isinstance(log, KafkaEventLog)
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with log:
                status = log.sequencer_status()
                assert status is not None
                err.print(
                    f"sequencer of group {status.group_id!r} running on {log.bootstrap}; "
                    "Ctrl-C or SIGTERM stops it"
                )
                _show(status, as_json, "started")
                # A long-running service: what start-up allocated (modules, schemas, the
                # client) lives as long as the process, so the garbage collector's full
                # collections need not walk it again and again (docs/kafka.md, "Read
                # latency and the garbage collector").
                gc.collect()
                gc.freeze()
                async with anyio.create_task_group() as tg:

                    async def report() -> None:
                        while True:
                            await anyio.sleep(every)
                            now = log.sequencer_status()
                            assert now is not None
                            _show(now, as_json, "running")

                    tg.start_soon(report)
                    async for signum in signals:
                        err.print(f"{signal.Signals(signum).name}: stopping the sequencer")
                        tg.cancel_scope.cancel()
                        break
            final = log.sequencer_status()
            assert final is not None
            _show(final, as_json, "stopped")

    run(body)
