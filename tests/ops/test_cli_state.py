"""The thread-state commands, run as users run them: real processes on a real data dir."""

from __future__ import annotations

import json
from pathlib import Path

from tests.ops.test_cli import agentlog


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_demo_then_state_history_rollback_fork_verify(tmp_path: Path) -> None:
    done = agentlog("demo", "--thread", "d", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "demo.merge.sources" in out and "conflict: 2 siblings kept" in out
    assert 'demo.manual.plan = "ship on Friday" (memory.Resolved' in out
    assert "Rollback to seq 17" in out

    # A later process folds the thread the same way (same default policies).
    state = json.loads(agentlog("state", "d", "--json", cwd=tmp_path).stdout)
    memory = state["memory"]
    assert memory["demo.merge.sources"]["value_json"] == "3"  # rolled back to before the writes
    assert memory["demo.manual.plan"]["policy"] == "manual"
    assert [r["to_seq"] for r in state["lineage"]["rollbacks"]] == [17]
    before = json.loads(agentlog("state", "d", "--at", "29", "--json", cwd=tmp_path).stdout)
    assert before["memory"]["demo.merge.sources"]["value_json"] == "6"
    assert before["memory"]["demo.merge.stores"]["value_json"] == '["nats","sqlite"]'
    human = agentlog("state", "d", cwd=tmp_path)
    assert human.returncode == 0 and "thread d" in human.stdout and "memory" in human.stdout

    history = _json_lines(agentlog("history", "d", "--json", cwd=tmp_path).stdout)
    assert len(history) == 30
    undone = [e["seq"] for e in history if not e["live"]]
    assert undone == list(range(18, 30))
    assert {e["undone_by"] for e in history if not e["live"]} == {30}

    again = agentlog("rollback", "d", "--to", "29", "--reason", "undo the rollback", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "rolled back thread 'd' to seq 29" in again.stdout
    now = json.loads(agentlog("state", "d", "--json", cwd=tmp_path).stdout)
    assert now["memory"]["demo.merge.sources"]["value_json"] == "6"

    forked = agentlog("fork", "d", "--at", "17", "--into", "d2", "--json", cwd=tmp_path)
    assert forked.returncode == 0, forked.stderr
    copy = json.loads(forked.stdout)
    assert copy["lineage"]["forked_from"]["source_seq"] == 17
    taken = agentlog("fork", "d", "--at", "17", "--into", "d2", cwd=tmp_path)
    assert taken.returncode == 1 and "cannot fork into thread 'd2'" in taken.stderr

    verified = _json_lines(agentlog("verify", "--all", "--json", cwd=tmp_path).stdout)
    assert [(v["thread_id"], v["ok"]) for v in verified] == [("d", True), ("d2", True)]
    rebuilt = json.loads(agentlog("rebuild", "--json", cwd=tmp_path).stdout)
    assert rebuilt["threads"] == 2 and rebuilt["events"] == 32


def test_conflicts_and_resolve(tmp_path: Path) -> None:
    env = {"AGENTLOG_PROJECTIONS__POLICIES": '{"plan": "manual"}'}
    for actor, value in (("a", '\\"x\\"'), ("b", '\\"y\\"')):
        data = f'{{"key": "plan", "value_json": "{value}"}}'
        done = agentlog(
            "events", "append", "t", "--type", "memory.Set", "--data", data,
            "--actor", actor, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    # Raw appends carry no vector: with a vector on one of them they would be concurrent;
    # without, the second follows the first (log order), so no conflict yet.
    assert "no unresolved conflicts" in agentlog("conflicts", cwd=tmp_path, env=env).stdout
    vv = '{"key": "plan", "value_json": "\\"z\\""}'
    append = agentlog(
        "events", "append", "t", "--type", "memory.Set", "--data", vv, "--actor", "c",
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert append.returncode == 0
    # A write with a version vector is concurrent with the vector-less ones.
    script = (
        "import anyio\n"
        "from eventstore import EmbeddedEventLog, new_event\n"
        "from eventstore.payloads import MemorySet\n"
        "async def main():\n"
        "    async with EmbeddedEventLog('.agentlog/agentlog.db') as log:\n"
        "        await log.append('t', [new_event(MemorySet(key='plan', value_json='\"w\"'),"
        " actor='d', version_vector={'d': 1})])\n"
        "anyio.run(main)\n"
    )
    import subprocess
    import sys

    from tests.ops.test_cli import ROOT

    subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, check=True, env={"PYTHONPATH": str(ROOT)}
    )
    listed = _json_lines(agentlog("conflicts", "--json", cwd=tmp_path, env=env).stdout)
    assert [(c["thread_id"], c["key"]) for c in listed] == [("t", "plan")]
    siblings = listed[0]["siblings"]
    assert isinstance(siblings, list) and len(siblings) == 2
    table = agentlog("conflicts", "t", cwd=tmp_path, env=env)
    assert "1 unresolved conflict(s)" in table.stdout
    bad = agentlog("resolve", "t", "plan", "--choose", "nope", cwd=tmp_path, env=env)
    assert bad.returncode == 1 and "is not a sibling" in bad.stderr
    neither = agentlog("resolve", "t", "plan", cwd=tmp_path, env=env)
    assert neither.returncode == 2
    chosen = siblings[0]["event_id"]  # type: ignore[index]
    ok = agentlog("resolve", "t", "plan", "--choose", chosen, "--json", cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["value_json"] == siblings[0]["value_json"]  # type: ignore[index]
    assert "no unresolved conflicts" in agentlog("conflicts", cwd=tmp_path, env=env).stdout
    last = agentlog(
        "rollback", "t", "--to", "last-consistent", "--reason", "r", cwd=tmp_path, env=env
    )
    assert last.returncode == 1 and "nothing to roll back to" in last.stderr


def test_bad_points_and_settings_are_named(tmp_path: Path) -> None:
    agentlog("demo", "--thread", "d", cwd=tmp_path)
    missing = agentlog("state", "nope", cwd=tmp_path)
    assert missing.returncode == 1 and "thread 'nope' has no events" in missing.stderr
    past = agentlog("state", "d", "--at", "99", cwd=tmp_path)
    assert past.returncode == 1 and "the thread has seqs 1 to 30" in past.stderr
    bad = agentlog("state", "d", cwd=tmp_path, env={"AGENTLOG_PROJECTIONS__SYNC": "eager"})
    assert bad.returncode == 2 and "sync mode 'eager'" in bad.stderr
    policy = agentlog(
        "state", "d", cwd=tmp_path, env={"AGENTLOG_PROJECTIONS__POLICIES": '{"x": "newest"}'}
    )
    assert policy.returncode == 2 and "policy 'newest' for 'x'" in policy.stderr
    store = agentlog(
        "state", "d", cwd=tmp_path, env={"AGENTLOG_PROJECTIONS__SNAPSHOTS": "redis://x"}
    )
    assert store.returncode == 1 and "unknown scheme 'redis'" in store.stderr
    wrong = agentlog(
        "state", "d", cwd=tmp_path,
        env={"AGENTLOG_PROJECTIONS__SNAPSHOTS": f"sqlite:///{tmp_path / '.agentlog/agentlog.db'}"},
    )  # fmt: skip
    assert wrong.returncode == 1 and "is an embedded agentlog log" in wrong.stderr
