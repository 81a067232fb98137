"""The runnable examples in the README and docs keep running."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_blocks(doc: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(encoding="utf-8"), re.S)


def _run(code: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_readme_example_then_downstream_decoding_example(tmp_path: Path) -> None:
    (readme,) = _python_blocks("README.md")
    first = _run(readme, tmp_path)
    assert "appended at seq 1 position 1" in first
    assert "2 memory.Set planner" in first
    second = _run(readme, tmp_path)  # the thread is at version 3 now: the check refuses
    assert "someone else wrote first; thread is at version 3" in second

    (consumer,) = _python_blocks("docs/events.md")
    consumer = consumer.replace('"eventstore/schemas/', f'"{ROOT}/eventstore/schemas/')
    consumer += (
        "\nimport sqlite3\n"
        "con = sqlite3.connect('.agentlog/example.db')\n"
        "for (body,) in con.execute('SELECT body FROM events ORDER BY position'):\n"
        "    event = decode(body)\n"
        "    print(event['seq'], event['type'], event['payload'].get('key'))\n"
    )
    lines = _run(consumer, tmp_path).splitlines()
    assert lines == ["1 a2a.Message None", "2 memory.Set goal", "3 a2a.Message None"]


def test_projections_example(tmp_path: Path) -> None:
    (example,) = _python_blocks("docs/projections.md")
    lines = _run(example, tmp_path).splitlines()
    assert lines == [
        "sources = 6",
        "as of seq 1: {'counts.sources': '3'}",
        "after rollback: {'counts.sources': '3'} version 4",
    ]
