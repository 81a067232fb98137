"""The ``agentlog`` command, run as users run it: a real process against a real log file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def agentlog(
    *args: str, cwd: Path, env: dict[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", **(env or {})}
    full_env.pop("AGENTLOG_LOG", None)
    if env and "AGENTLOG_LOG" in env:
        full_env["AGENTLOG_LOG"] = env["AGENTLOG_LOG"]
    return subprocess.run(
        [sys.executable, "-c", "from ops.cli import main; main()", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        input=input,
    )


def delete_key(
    cwd: Path,
    thread: str,
    data: str,
    *options: str,
    expected_version: int | None = None,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """``agentlog [OPTIONS] events append THREAD --type memory.Delete --data DATA
    [--expected-version N]``."""
    check = () if expected_version is None else ("--expected-version", str(expected_version))
    return agentlog(
        *options,
        "events",
        "append",
        thread,
        "--type",
        "memory.Delete",
        "--data",
        data,
        *check,
        cwd=cwd,
        **kw,
    )


def test_demo_writes_and_shows_a_conversation(tmp_path: Path) -> None:
    done = agentlog("demo", "--thread", "demo-test", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Wrote 12 events to thread demo-test" in done.stdout
    assert "a2a.Message" in done.stdout and "memory.Set" in done.stdout
    assert "findings = " in done.stdout
    assert (tmp_path / ".agentlog" / "agentlog.db").exists()
    lines = agentlog("events", "cat", "demo-test", "--json", cwd=tmp_path).stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["seq"] for e in events] == list(range(1, 31))
    assert events[0]["type"] == "a2a.Message"
    assert events[0]["payload"]["role"] == "user"
    assert [e["type"] for e in events[27:]] == [
        "memory.Conflict",
        "memory.Resolved",
        "thread.RolledBack",
    ]
    again = agentlog("demo", "--thread", "demo-test", cwd=tmp_path)
    assert again.returncode == 0
    assert (
        len(agentlog("events", "cat", "demo-test", "--json", cwd=tmp_path).stdout.splitlines())
        == 60
    )


def test_append_then_cat(tmp_path: Path) -> None:
    log = f"sqlite:///{tmp_path / 'x.db'}"
    env = {"AGENTLOG_LOG": log}
    first = agentlog(
        "events",
        "append",
        "t-1",
        "--type",
        "memory.Set",
        "--data",
        '{"key": "plan", "value_json": "\\"draft\\""}',
        cwd=tmp_path,
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert "as seq 1" in first.stdout
    message = {
        "message_id": "m1",
        "role": "agent",
        "parts": [{"text": "Hello there"}],
        "task_id": "task-9",
    }
    second = agentlog(
        *("events", "append", "t-1", "--type", "a2a.Message", "--actor", "planner"),
        *("--expected-version", "1", "--json", "--data", json.dumps(message)),
        cwd=tmp_path,
        env=env,
    )
    assert second.returncode == 0, second.stderr
    appended = json.loads(second.stdout)
    assert (appended["seq"], appended["actor"], appended["type"]) == (2, "planner", "a2a.Message")
    assert appended["payload"]["parts"][0]["text"] == "Hello there"
    assert appended["payload"]["task_id"] == "task-9"
    table = agentlog("events", "cat", "t-1", cwd=tmp_path, env=env)
    assert 'plan = "draft"' in table.stdout
    assert "[agent] Hello there" in table.stdout
    as_json = [
        json.loads(line)
        for line in agentlog(
            "events", "cat", "t-1", "--json", cwd=tmp_path, env=env
        ).stdout.splitlines()
    ]
    assert as_json[1] == appended
    assert set(as_json[0]) >= {
        "event_id",
        "thread_id",
        "tenant",
        "seq",
        "type",
        "occurred_at",
        "actor",
        "version_vector",
        "payload",
    }


def test_global_log_flag_overrides_the_environment(tmp_path: Path) -> None:
    flag = f"sqlite:///{tmp_path / 'flag.db'}"
    env = {"AGENTLOG_LOG": f"sqlite:///{tmp_path / 'env.db'}"}
    done = delete_key(tmp_path, "t", '{"key": "k"}', "--log", flag, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "flag.db").exists() and not (tmp_path / "env.db").exists()


def test_data_from_file_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"key": "a"}')
    assert delete_key(tmp_path, "t", "@p.json").returncode == 0
    assert delete_key(tmp_path, "t", "-", input='{"key": "b"}').returncode == 0
    keys = [
        json.loads(line)["payload"]["key"]
        for line in agentlog("events", "cat", "t", "--json", cwd=tmp_path).stdout.splitlines()
    ]
    assert keys == ["a", "b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--type", "memory.Set", "--data", '{"key": 3, "value_json": "1"}'],
            "field 'payload.key'",
        ),
        (
            ["--type", "memory.Set", "--data", '{"key": "k"}'],
            "field 'payload.value_json': Field required",
        ),
        (
            ["--type", "memory.Set", "--data", '{"key": "k", "value_json": "1", "colour": 1}'],
            "payload.colour",
        ),
        (["--type", "memory.Sett", "--data", "{}"], "unknown event type 'memory.Sett'"),
        (["--type", "memory.Set", "--data", "not json"], "Invalid JSON"),
        (
            ["--type", "memory.Delete", "--data", '{"key": "k"}', "--expected-version", "4"],
            "expected version 4 of thread 't', current version is 0",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    done = agentlog("events", "append", "t", *args, cwd=tmp_path)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_log_urls_are_named(tmp_path: Path) -> None:
    for url, message in [
        ("postgres://x", "unknown scheme 'postgres'"),
        ("nothing", "has no scheme"),
        ("sqlite://", "expected sqlite:///"),
    ]:
        done = agentlog("--log", url, "events", "cat", "t", cwd=tmp_path)
        assert done.returncode != 0
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_corrupt_log_file_is_reported_not_traced(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"garbage" * 1000)
    done = agentlog("--log", "sqlite:///bad.db", "events", "cat", "t", cwd=tmp_path)
    assert done.returncode == 1
    assert "not a readable SQLite database" in done.stderr
    assert "Traceback" not in done.stderr


def test_tail_follows_from_a_position(tmp_path: Path) -> None:
    for key in "abc":
        delete_key(tmp_path, f"t-{key}", json.dumps({"key": key}))
    done = agentlog(
        "events", "tail", "--from-position", "2", "--limit", "2", "--json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["thread_id"] for line in done.stdout.splitlines()] == ["t-b", "t-c"]
    human = agentlog("events", "tail", "--from-position", "1", "--limit", "1", cwd=tmp_path)
    assert "t-a#1" in human.stdout and "memory.Delete" in human.stdout


def test_threads_lists_versions(tmp_path: Path) -> None:
    agentlog("demo", "--thread", "d1", cwd=tmp_path)
    done = agentlog("events", "threads", "--json", cwd=tmp_path)
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"thread_id": "d1", "tenant": "default", "version": 30, "first_position": 1}
    ]


def test_schemas_list_show_check(tmp_path: Path) -> None:
    listed = [
        json.loads(line)
        for line in agentlog("schemas", "list", "--json", cwd=tmp_path).stdout.splitlines()
    ]
    assert len(listed) == 16
    assert {"type": "memory.Set", "record": "agentlog.memory.Set"}.items() <= listed[3].items()
    shown = json.loads(agentlog("schemas", "show", "memory.Set", "--json", cwd=tmp_path).stdout)
    assert shown["name"] == "agentlog.memory.Set"
    assert [f["name"] for f in shown["fields"]] == ["key", "value_json", "kind"]
    assert shown["fields"][2]["type"]["type"] == "enum"  # self-contained: the enum is inlined
    human = agentlog("schemas", "show", "a2a.Message", cwd=tmp_path).stdout
    assert "message_id" in human and "array<a2a.Part>" in human
    unknown = agentlog("schemas", "show", "nope", cwd=tmp_path)
    assert unknown.returncode == 1 and "unknown event type 'nope'" in unknown.stderr
    check = agentlog("schemas", "check", "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert json.loads(check.stdout.splitlines()[0])["compatible"] is True


def test_schemas_check_fails_on_an_incompatible_change(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    folder.mkdir()
    for path in (ROOT / "eventstore" / "schemas").glob("*.avsc"):
        (folder / path.name).write_text(path.read_text())
    changed = json.loads((folder / "agentlog.memory.Set.avsc").read_text())
    changed["fields"].append(
        {"name": "ttl_seconds", "type": "long"}
    )  # no default: breaks old events
    (folder / "agentlog.memory.Set.avsc").write_text(json.dumps(changed))
    done = agentlog("schemas", "check", "--schemas", str(folder), cwd=tmp_path)
    assert done.returncode == 1
    assert "ttl_seconds" in done.stdout


def test_help_teaches(tmp_path: Path) -> None:
    top = agentlog("--help", cwd=tmp_path).stdout
    assert "Examples:" in top and "--log URL" in top
    append_help = agentlog("events", "append", "--help", cwd=tmp_path).stdout
    assert (
        "Examples:" in append_help
        and "a2a.Message" in append_help
        and "--expected-version" in append_help
    )
