"""The layout rules of ARCHITECTURE.md and STYLE.md, checked on the source tree."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["eventstore", "projections", "agents", "connectors", "ops"]
STDLIB_IO_FREE = {
    "anyio",
    "aiokafka",
    "psycopg",
    "sqlite3",
    "openai",
    "time",
    "random",
    "os",
    "socket",
}

# package -> project packages and third-party distributions it may import
ALLOWED = {
    "eventstore": {"eventstore", "fastavro", "aiokafka", "pydantic", "anyio"},
    # Snapshots are Zstandard-compressed: the standard library's ``compression.zstd`` from
    # Python 3.14, its backport (``backports.zstd``) before.
    "projections": {
        "projections",
        "eventstore",
        "psycopg",
        "psycopg_pool",
        "anyio",
        "pydantic",
        "compression",
        "backports",
    },
    "agents": {"agents", "eventstore", "projections", "openai", "anyio", "pydantic"},
    "connectors": {
        "connectors",
        "agents",
        "eventstore",
        "projections",
        "anyio",
        "pydantic",
        "psycopg",
        "psycopg_pool",
    },
    "ops": set(PACKAGES)
    | {"anyio", "click", "rich", "pydantic", "pydantic_settings", "prometheus_client"},
}
# the pure core: no I/O, no clock, no randomness; CI also requires it fully covered
PURE = (ROOT / ".ci" / "pure-core").read_text(encoding="utf-8").split()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _is_third_party_or_project(name: str) -> bool:
    import sys

    return name not in sys.stdlib_module_names


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_what_the_architecture_allows(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        foreign = {n for n in _imports(path) if _is_third_party_or_project(n)} - ALLOWED[package]
        assert not foreign, f"{path.relative_to(ROOT)} imports {sorted(foreign)}"


@pytest.mark.parametrize("module", PURE)
def test_pure_core_does_no_io(module: str) -> None:
    path = ROOT / module
    if not path.exists():
        pytest.fail(f"{module} is listed as pure core but does not exist")
    assert not _imports(path) & STDLIB_IO_FREE, module


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_sorted_and_complete(package: str) -> None:
    module = importlib.import_module(package)
    exported = list(module.__all__)

    # isort style, as ruff's RUF022 keeps it: CONSTANTS, then Classes, then functions
    def style(n: str) -> tuple[int, str]:
        return (0 if n.isupper() else 1 if n[0].isupper() else 2, n)

    assert exported == sorted(exported, key=style), f"{package}.__all__ is not sorted"
    for name in exported:
        assert hasattr(module, name), f"{package}.__all__ names {name!r} which does not exist"
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and getattr(v, "__module__", "").startswith(package + ".")
    }
    assert public <= set(exported), (
        f"{package} exports {sorted(public - set(exported))} without __all__"
    )


def test_every_package_ships_py_typed() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").exists(), package
