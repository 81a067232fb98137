"""The ``agentlog`` command on the Kafka backend: ``--log kafka://...`` or ``AGENTLOG_LOG``,
run as separate processes against the run's broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.kafka.broker import TansuBroker
from tests.ops.test_cli import ROOT, agentlog, delete_key

# Fast sequencer group forming for tests (the broker holds a new group's first join for
# half the session timeout).
# "before" is position 1 of the index the processes in one folder share
TAIL_ARGS = ("events", "tail", "--from-position", "2", "--limit", "2", "--json")
KAFKA_ENV = {"AGENTLOG_KAFKA__SESSION_TIMEOUT_MS": "2000", "AGENTLOG_KAFKA__PARTITIONS": "4"}


@pytest.fixture
def kafka_env(kafka_broker: TansuBroker) -> dict[str, str]:
    """Environment selecting the shared broker, with topics of this test's own."""
    return {
        **KAFKA_ENV,
        "AGENTLOG_LOG": f"kafka://{kafka_broker.bootstrap}",
        "AGENTLOG_KAFKA__TOPIC_PREFIX": f"cli-{uuid.uuid4().hex[:10]}",
    }


def append(cwd: Path, env: dict[str, str], thread: str, key: str, *extra: str) -> dict[str, object]:
    done = agentlog(
        "events",
        "append",
        thread,
        "--type",
        "memory.Set",
        "--data",
        json.dumps({"key": key, "value_json": json.dumps(key)}),
        "--json",
        *extra,
        cwd=cwd,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_append_cat_and_version_check_on_kafka(tmp_path: Path, kafka_env: dict[str, str]) -> None:
    first = append(tmp_path, kafka_env, "t", "a")
    assert (first["thread_id"], first["seq"], first["type"]) == ("t", 1, "memory.Set")
    append(tmp_path, kafka_env, "t", "b", "--expected-version", "1")
    stale = delete_key(tmp_path, "t", '{"key": "a"}', expected_version=1, env=kafka_env)
    assert stale.returncode == 1
    assert "expected version 1 of thread 't', current version is 2" in stale.stderr
    assert "Traceback" not in stale.stderr

    # a new process with a fresh index directory sees both events (it catches up on open)
    other = tmp_path / "elsewhere"
    other.mkdir()
    lines = agentlog("events", "cat", "t", "--json", cwd=other, env=kafka_env).stdout.splitlines()
    assert [(json.loads(x)["seq"], json.loads(x)["payload"]["key"]) for x in lines] == [
        (1, "a"),
        (2, "b"),
    ]
    human = agentlog("events", "cat", "t", cwd=other, env=kafka_env)
    assert human.returncode == 0, human.stderr
    assert "memory.Set" in human.stdout
    listed = agentlog("events", "threads", "--json", cwd=other, env=kafka_env)
    assert [json.loads(line) for line in listed.stdout.splitlines()] == [
        {"thread_id": "t", "tenant": "default", "version": 2, "first_position": 1}
    ]


def test_log_flag_selects_kafka(tmp_path: Path, kafka_env: dict[str, str]) -> None:
    env = {k: v for k, v in kafka_env.items() if k != "AGENTLOG_LOG"}
    url = kafka_env["AGENTLOG_LOG"]
    done = agentlog(
        "--log",
        url,
        "events",
        "append",
        "flagged",
        "--type",
        "memory.Delete",
        "--data",
        '{"key": "k"}',
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    shown = agentlog("--log", url, "events", "cat", "flagged", "--json", cwd=tmp_path, env=env)
    assert json.loads(shown.stdout)["type"] == "memory.Delete"
    # without the flag the same command reads the (empty) embedded log
    assert agentlog("events", "cat", "flagged", cwd=tmp_path, env=env).stdout.strip() == ""


def test_tail_follows_appends_of_other_processes(tmp_path: Path, kafka_env: dict[str, str]) -> None:
    append(tmp_path, kafka_env, "before", "x")
    env = {**kafka_env, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}
    tail = subprocess.Popen(
        [sys.executable, "-c", "from ops.cli import main; main()", *TAIL_ARGS],
        cwd=tmp_path,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        append(tmp_path, kafka_env, "live", "y")
        append(tmp_path, kafka_env, "live", "z")
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert [(e["thread_id"], e["seq"], e["payload"]["key"]) for e in got] == [
        ("live", 1, "y"),
        ("live", 2, "z"),
    ]


def test_unreachable_broker_is_a_clear_error(tmp_path: Path) -> None:
    env = {**KAFKA_ENV, "AGENTLOG_KAFKA__REQUEST_TIMEOUT": "1"}
    started = time.monotonic()
    done = agentlog("--log", "kafka://127.0.0.1:1", "events", "cat", "t", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert "Kafka broker at 127.0.0.1:1 is unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


def test_bad_kafka_url_names_the_problem(tmp_path: Path) -> None:
    done = agentlog("--log", "kafka://nohost", "events", "cat", "t", cwd=tmp_path)
    assert done.returncode == 1
    assert "expected kafka://HOST:PORT[,HOST:PORT]" in done.stderr
    assert "'nohost' is not HOST:PORT" in done.stderr


def test_demo_and_thread_state_on_kafka(tmp_path: Path, kafka_env: dict[str, str]) -> None:
    done = agentlog("demo", "--thread", "d", cwd=tmp_path, env=kafka_env)
    assert done.returncode == 0, done.stderr
    assert "conflict: 2 siblings kept" in done.stdout
    state = json.loads(agentlog("state", "d", "--json", cwd=tmp_path, env=kafka_env).stdout)
    assert state["version"] == 30
    assert state["memory"]["demo.merge.sources"]["value_json"] == "3"
    at = json.loads(
        agentlog("state", "d", "--at", "29", "--json", cwd=tmp_path, env=kafka_env).stdout
    )
    assert at["memory"]["demo.merge.sources"]["value_json"] == "6"
    verified = agentlog("verify", "d", "--json", cwd=tmp_path, env=kafka_env)
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"] is True


SEQUENCER_ARGS = ("sequencer", "--every", "0.2", "--json")


def test_sequencer_service_serves_clients_that_do_not_sequence(
    tmp_path: Path, kafka_env: dict[str, str]
) -> None:
    service_dir = tmp_path / "service"
    service_dir.mkdir()
    service = subprocess.Popen(
        [sys.executable, "-c", "from ops.cli import main; main()", *SEQUENCER_ARGS],
        cwd=service_dir,
        env={**os.environ, **kafka_env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.stdout is not None
        started = json.loads(service.stdout.readline())
        assert (started["what"], started["partitions"]) == ("started", [0, 1, 2, 3])
        # Clients that take no part in sequencing: only the service can answer them.
        client = {**kafka_env, "AGENTLOG_KAFKA__SEQUENCER": "false"}
        first = append(tmp_path, client, "svc", "a", "--expected-version", "0")
        assert (first["thread_id"], first["seq"]) == ("svc", 1)
        stale = delete_key(tmp_path, "svc", '{"key": "a"}', expected_version=0, env=client)
        assert stale.returncode == 1
        assert "current version is 1" in stale.stderr
        # A command that only reads never joins the group, whatever the setting says.
        cat = agentlog("-v", "events", "cat", "svc", "--json", cwd=tmp_path, env=kafka_env)
        assert cat.returncode == 0, cat.stderr
        assert [json.loads(line)["seq"] for line in cat.stdout.splitlines()] == [1]
        assert "sequencer off" in cat.stderr
        service.send_signal(signal.SIGTERM)
        out, err = service.communicate(timeout=60)
    finally:
        service.kill()
    assert service.returncode == 0, err
    assert "SIGTERM: stopping the sequencer" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["what"] == "stopped"
    assert (lines[-1]["accepted"], lines[-1]["duplicates"], lines[-1]["rejected"]) == (1, 0, 1)
    assert any(line["what"] == "running" for line in lines)


def test_sequencer_needs_a_kafka_log(tmp_path: Path) -> None:
    done = agentlog("sequencer", cwd=tmp_path)
    assert done.returncode == 1
    assert "agentlog sequencer runs on a Kafka log" in done.stderr
    assert "Traceback" not in done.stderr
