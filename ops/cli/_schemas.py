"""``agentlog schemas``: the published Avro schemas, and the compatibility check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from eventstore import SchemaError
from eventstore.compat import check_backward_transitive
from eventstore.schema import ENVELOPE, SCHEMA_DIR, load_schema_set, shipped_schemas
from ops.cli._context import fail
from ops.cli._render import out, print_json


@click.group()
def schemas() -> None:
    """Show the Avro schemas events are written with, and check schema changes."""


def _type_name(schema: Any) -> str:
    if isinstance(schema, str):
        return schema.removeprefix("agentlog.")
    if isinstance(schema, list):
        names = [_type_name(s) for s in schema]
        if len(names) == 2 and "null" in names:
            return f"{next(n for n in names if n != 'null')}?"
        return " | ".join(names)
    kind = schema.get("type")
    if kind == "array":
        return f"array<{_type_name(schema['items'])}>"
    if kind == "map":
        return f"map<{_type_name(schema['values'])}>"
    if kind in ("record", "enum", "fixed"):
        return str(schema["name"]).removeprefix("agentlog.")
    if schema.get("logicalType"):
        return str(schema["logicalType"])
    return _type_name(kind)


@schemas.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event type per line.")
def list_types(as_json: bool) -> None:
    """List the event types, their Avro records and what they mean."""
    current = shipped_schemas()
    rows = []
    for full in current.payload_names():
        record = current.named[full]
        rows.append(
            (full.removeprefix("agentlog."), full, len(record["fields"]), record.get("doc", ""))
        )
    if as_json:
        for event_type, full, n_fields, doc in rows:
            print_json({"type": event_type, "record": full, "fields": n_fields, "doc": doc})
        return
    table = Table(
        title=f"{len(rows)} event types · schema fingerprint {current.fingerprint.hex()}",
        title_justify="left",
    )
    table.add_column("type", style="cyan", no_wrap=True)
    table.add_column("Avro record", no_wrap=True)
    table.add_column("fields", justify="right")
    table.add_column("meaning", overflow="fold")
    for event_type, full, n_fields, doc in rows:
        table.add_row(event_type, full, str(n_fields), doc)
    out.print(table)
    out.print(f"Schema files: {SCHEMA_DIR}")


@schemas.command(
    epilog="""\b
Examples:
  agentlog schemas show memory.Set
  agentlog schemas show a2a.Message --json > message.avsc
  agentlog schemas show Envelope --json      the whole writer schema, expanded
"""
)
@click.argument("event_type", metavar="TYPE")
@click.option("--json", "as_json", is_flag=True, help="Print the Avro schema itself (JSON).")
def show(event_type: str, as_json: bool) -> None:
    """Show the Avro schema of TYPE's payload record (or of the Envelope).

    The JSON form is self-contained: every named type it uses is written out in full at
    its first use.
    """
    current = shipped_schemas()
    if event_type in ("Envelope", ENVELOPE):
        schema = current.envelope
    else:
        try:
            schema = current.payload_schema(event_type)
        except KeyError:
            known = ", ".join(n.removeprefix("agentlog.") for n in current.payload_names())
            fail(f"unknown event type {event_type!r}; known types: {known}, Envelope")
    if as_json:
        print_json(schema)
        return
    table = Table(title=f"{schema['name']} — {schema.get('doc', '')}", title_justify="left")
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("type", style="cyan")
    table.add_column("default")
    table.add_column("meaning", overflow="fold")
    for field in schema["fields"]:
        default = json.dumps(field["default"]) if "default" in field else "(required)"
        table.add_row(field["name"], _type_name(field["type"]), default, field.get("doc", ""))
    out.print(table)


@schemas.command(
    epilog="""\b
Examples:
  agentlog schemas check                           the shipped schemas
  agentlog schemas check --schemas ./my-schemas    a proposed change (a folder of .avsc files)
"""
)
@click.option(
    "--schemas",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of .avsc files to check instead of the shipped ones.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per released version.")
def check(folder: Path | None, as_json: bool) -> None:
    """Check that the current schemas read every released version (BACKWARD_TRANSITIVE).

    Every event ever written must stay readable: a new reader schema may add fields only
    with defaults, may not drop enum symbols or union branches old writers used, and so
    on (the Avro specification's resolution rules). Exits 1 if any version is not.
    """
    try:
        current = load_schema_set(folder) if folder else shipped_schemas()
        history = shipped_schemas().history
    except SchemaError as exc:
        fail(str(exc))
    report = check_backward_transitive(current.envelope, history)
    failed = {v: problems for v, problems in report.items() if problems}
    if as_json:
        for version in history:
            problems = report.get(version.version, [])
            print_json(
                {
                    "version": version.version,
                    "fingerprint": version.fingerprint.hex(),
                    "compatible": not problems,
                    "problems": [str(p) for p in problems],
                }
            )
    else:
        table = Table(
            title=f"current schema {current.fingerprint.hex()} reading released versions",
            title_justify="left",
        )
        table.add_column("version", justify="right")
        table.add_column("fingerprint")
        table.add_column("result")
        for version in history:
            problems = report.get(version.version, [])
            verdict = (
                "[green]readable[/]"
                if not problems
                else "[red]" + "\n".join(str(p) for p in problems) + "[/]"
            )
            table.add_row(f"v{version.version}", version.fingerprint.hex(), verdict)
        out.print(table)
        released = any(v.fingerprint == current.fingerprint for v in history)
        if not released:
            out.print(
                "note: the current schema is not a released version yet; freeze it as "
                f"eventstore/schemas/history/v{len(history) + 1}.json when it ships"
            )
    if failed:
        raise SystemExit(1)
