"""Avro schema compatibility: can data written with one schema be read with another?

A pure implementation of the schema resolution rules of the Avro specification, used to
keep every schema change BACKWARD_TRANSITIVE: the newest reader schema must read events
written by every released version. It does no I/O; schemas come in as JSON trees.

Both schemas are walked side by side. Each side keeps its own table of named types (the
expanded form defines a named type at its first use and refers to it by full name after
that; unqualified names resolve against the enclosing namespace). A pair of schemas is
compatible when:

- **Primitives** are the same type, or the writer's type promotes to the reader's:
  ``int`` to ``long``, ``float`` or ``double``; ``long`` to ``float`` or ``double``;
  ``float`` to ``double``; ``string`` to ``bytes`` and ``bytes`` to ``string``. Logical
  types are ignored: they resolve as their underlying type.
- **Records** have the same full name, or the reader lists the writer's full name among
  its aliases. (The specification compares unqualified names and fastavro does too; full
  names are stricter on purpose: moving a record to another namespace needs an alias.)
  Every reader field must be in the writer's record, by name or by one of the reader
  field's aliases, with a compatible type; otherwise it must have a default, and the
  default must be a valid value of the field's type (for a union, of its first branch).
  Writer fields the reader does not have are skipped.
- **Enums** have matching names, and every writer symbol is a reader symbol unless the
  reader declares a ``default`` symbol to read unknown ones as.
- **Fixed** types have matching names and the same size.
- **Arrays** have compatible items; **maps** have compatible values.
- A **writer union** is compatible when every one of its branches is readable by the
  reader: by the reader itself if it is not a union, else by a branch the reader selects.
- A **reader union** with a non-union writer selects its first branch of the same type
  (same name for named types), else its first branch the writer's type promotes to; the
  writer must then be compatible with that branch. No such branch: incompatible.

Named types may be recursive. A pair of named types is compared once per check: a pair
already being compared is taken as compatible where it recurs (any problem is reported
where it was first met), which makes the walk terminate.

Problems are reported as :class:`Incompatibility` values with a readable path such as
``agentlog.Envelope.payload[agentlog.memory.Set].kind``: record fields are joined with
``.``, the branch of a writer union is in brackets, array items are ``[]`` and map values
``{}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from eventstore.errors import SchemaError

if TYPE_CHECKING:
    # Only for annotations: the loader does file I/O, this module must not need it.
    from eventstore.schema import Schema, SchemaVersion

__all__ = ["Incompatibility", "check_backward_transitive", "check_can_read"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_KINDS = frozenset({"record", "error", "enum", "fixed"})
_PROMOTIONS: Mapping[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
"""Writer primitive type -> the reader types it is promoted to."""
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


@dataclasses.dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason data written with the writer schema cannot be read with the reader schema.

    Attributes:
        path: Where, e.g. ``agentlog.Envelope.payload[agentlog.memory.Set].kind``.
        reader: Short description of the reader's type there.
        writer: Short description of the writer's type there.
        problem: What does not fit.
    """

    path: str
    reader: str
    writer: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem} (reader: {self.reader}; writer: {self.writer})"


def check_can_read(reader: Schema, writer: Schema) -> list[Incompatibility]:
    """Return why data written with ``writer`` cannot be read with ``reader``.

    Args:
        reader: The reader's schema, a JSON tree (named types defined at first use).
        writer: The writer's schema, likewise.

    Returns:
        The incompatibilities found, in schema order; empty when ``reader`` reads every
        datum ``writer`` can write.

    Raises:
        SchemaError: a schema is not a valid Avro schema (e.g. it refers to a named type it
            never defines).
    """
    return _Checker(reader, writer).run()


def check_backward_transitive(
    current: Schema, history: Sequence[SchemaVersion]
) -> dict[int, list[Incompatibility]]:
    """Check that ``current`` reads events written by every released version.

    Args:
        current: The reader schema (the current envelope, expanded).
        history: The released versions.

    Returns:
        For each released version number, the incompatibilities of ``current`` reading it
        (empty lists where it can).

    Raises:
        SchemaError: a schema is not a valid Avro schema.
    """
    return {v.version: check_can_read(current, v.schema) for v in history}


# --- named types -----------------------------------------------------------------------


def _fullname(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _space(full: str) -> str | None:
    return full.rpartition(".")[0] or None


@dataclasses.dataclass(frozen=True, slots=True)
class _Type:
    """A schema node with references resolved.

    ``kind`` is a primitive name, ``record``, ``enum``, ``fixed``, ``array``, ``map`` or
    ``union``; ``namespace`` is what names inside the node resolve against.
    """

    kind: str
    node: Schema
    name: str | None
    namespace: str | None


class _Side:
    """The named types of one schema, and resolution of its nodes."""

    def __init__(self, schema: Schema, role: str) -> None:
        self.role = role
        self.named: dict[str, tuple[Schema, str | None]] = {}
        self.root = schema
        self._collect(schema, None)

    def _collect(self, node: Schema, namespace: str | None) -> None:
        if isinstance(node, list):
            for branch in node:
                self._collect(branch, namespace)
            return
        if not isinstance(node, dict):
            return
        kind = node.get("type")
        if isinstance(kind, (dict, list)):
            self._collect(kind, namespace)
        elif kind in _NAMED_KINDS:
            if not isinstance(node.get("name"), str):
                raise SchemaError(f"{self.role} schema: a {kind} has no name: {node!r}")
            full = _fullname(node["name"], node.get("namespace", namespace))
            if full in self.named:
                if self.named[full][0] != node:
                    raise SchemaError(f"{self.role} schema defines {full!r} twice, differently")
                return
            self.named[full] = (node, namespace)
            if kind in ("record", "error"):
                for field in node.get("fields", ()):
                    self._collect(field.get("type"), _space(full))
        elif kind == "array":
            self._collect(node.get("items"), namespace)
        elif kind == "map":
            self._collect(node.get("values"), namespace)

    def resolve(self, node: Schema, namespace: str | None) -> _Type:
        """Resolve ``node`` (met where names resolve against ``namespace``) to its type.

        Raises:
            SchemaError: the node is not a schema, or names an undefined type.
        """
        while True:
            if isinstance(node, list):
                return _Type("union", node, None, namespace)
            if isinstance(node, str):
                if node in _PRIMITIVES:
                    return _Type(node, node, None, namespace)
                full = _fullname(node, namespace)
                if full not in self.named and node in self.named:
                    full = node
                if full not in self.named:
                    raise SchemaError(f"{self.role} schema refers to undefined type {node!r}")
                node, namespace = self.named[full]
                continue
            if not isinstance(node, dict):
                raise SchemaError(f"{self.role} schema: not an Avro schema: {node!r}")
            kind = node.get("type")
            if isinstance(kind, (dict, list)):
                node = kind
            elif kind in _PRIMITIVES:
                return _Type(kind, node, None, namespace)
            elif kind in _NAMED_KINDS:
                full = _fullname(node["name"], node.get("namespace", namespace))
                simple = "record" if kind == "error" else kind
                return _Type(simple, node, full, _space(full))
            elif kind in ("array", "map"):
                return _Type(kind, node, None, namespace)
            elif isinstance(kind, str):
                node = kind
            else:
                raise SchemaError(f"{self.role} schema: not an Avro schema: {node!r}")

    def describe(self, t: _Type) -> str:
        """A short description of ``t`` (``long (timestamp-millis)``, ``enum x.Y``)."""
        if t.kind in _PRIMITIVES:
            logical = t.node.get("logicalType") if isinstance(t.node, dict) else None
            return f"{t.kind} ({logical})" if logical else t.kind
        if t.kind == "fixed":
            return f"fixed {t.name} (size {t.node.get('size')})"
        if t.name is not None:
            return f"{t.kind} {t.name}"
        if t.kind == "array":
            return f"array<{self.describe(self.resolve(t.node.get('items'), t.namespace))}>"
        if t.kind == "map":
            return f"map<{self.describe(self.resolve(t.node.get('values'), t.namespace))}>"
        branches = [self.label(self.resolve(b, t.namespace)) for b in t.node]
        return f"union [{', '.join(branches)}]"

    def label(self, t: _Type) -> str:
        """The name of ``t`` as a union branch: its full name, or its kind."""
        return t.name if t.name is not None else t.kind

    def aliases(self, t: _Type) -> set[str]:
        """Full names of the aliases of named type ``t``."""
        return {_fullname(a, t.namespace) for a in t.node.get("aliases", ())}


# --- the walk --------------------------------------------------------------------------


class _Checker:
    """One compatibility check of a reader schema against a writer schema."""

    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.r = _Side(reader, "reader")
        self.w = _Side(writer, "writer")
        # (reader name, writer name) -> problems; None while the pair is being compared
        self._memo: dict[tuple[str, str], list[Incompatibility] | None] = {}

    def run(self) -> list[Incompatibility]:
        rt = self.r.resolve(self.r.root, None)
        wt = self.w.resolve(self.w.root, None)
        path = rt.name or wt.name or "(root)"
        # a named pair met at several places reports its problems each time: keep one
        return list(dict.fromkeys(self._compare(rt, wt, path)))

    def _problem(self, path: str, rt: _Type, wt: _Type, problem: str) -> Incompatibility:
        return Incompatibility(path, self.r.describe(rt), self.w.describe(wt), problem)

    def _compare(self, rt: _Type, wt: _Type, path: str) -> list[Incompatibility]:
        if wt.kind == "union":
            out: list[Incompatibility] = []
            for branch in wt.node:
                bt = self.w.resolve(branch, wt.namespace)
                out += self._compare(rt, bt, f"{path}[{self.w.label(bt)}]")
            return out
        if rt.kind == "union":
            chosen = self._select(rt, wt)
            if chosen is None:
                return [
                    self._problem(
                        path, rt, wt, "no branch of the reader's union can read the writer's type"
                    )
                ]
            return self._compare(chosen, wt, path)
        if rt.kind == wt.kind:
            if rt.kind in _PRIMITIVES:
                return []
            if rt.kind == "array":
                items = self.r.resolve(rt.node.get("items"), rt.namespace)
                return self._compare(
                    items, self.w.resolve(wt.node.get("items"), wt.namespace), f"{path}[]"
                )
            if rt.kind == "map":
                values = self.r.resolve(rt.node.get("values"), rt.namespace)
                return self._compare(
                    values, self.w.resolve(wt.node.get("values"), wt.namespace), f"{path}{{}}"
                )
            if not self._names_match(rt, wt):
                return [self._problem(path, rt, wt, f"{rt.kind} names differ and no alias")]
            if rt.kind == "enum":
                return self._enums(rt, wt, path)
            if rt.kind == "fixed":
                if rt.node.get("size") != wt.node.get("size"):
                    return [self._problem(path, rt, wt, "fixed sizes differ")]
                return []
            return self._records(rt, wt, path)
        if rt.kind in _PROMOTIONS.get(wt.kind, ()):
            return []
        return [
            self._problem(
                path, rt, wt, "the writer's type is neither the reader's nor promotable to it"
            )
        ]

    def _names_match(self, rt: _Type, wt: _Type) -> bool:
        return rt.name == wt.name or wt.name in self.r.aliases(rt)

    def _select(self, union: _Type, wt: _Type) -> _Type | None:
        branches = [self.r.resolve(b, union.namespace) for b in union.node]
        for bt in branches:
            if bt.kind == wt.kind and (bt.name is None or self._names_match(bt, wt)):
                return bt
        for bt in branches:
            if bt.kind in _PROMOTIONS.get(wt.kind, ()):
                return bt
        return None

    def _enums(self, rt: _Type, wt: _Type, path: str) -> list[Incompatibility]:
        symbols = set(rt.node.get("symbols", ()))
        missing = [s for s in wt.node.get("symbols", ()) if s not in symbols]
        if missing and "default" not in rt.node:
            return [
                self._problem(
                    path,
                    rt,
                    wt,
                    f"writer symbols {missing} are not reader symbols and the reader enum "
                    "has no default",
                )
            ]
        return []

    def _records(self, rt: _Type, wt: _Type, path: str) -> list[Incompatibility]:
        assert rt.name is not None and wt.name is not None  # named kinds always have names
        key = (rt.name, wt.name)
        if key in self._memo:
            return self._memo[key] or []
        self._memo[key] = None
        written = {f["name"]: f for f in wt.node.get("fields", ())}
        out: list[Incompatibility] = []
        for field in rt.node.get("fields", ()):
            name = field["name"]
            fpath = f"{path}.{name}"
            ftype = self.r.resolve(field["type"], rt.namespace)
            source = written.get(name) or next(
                (written[a] for a in field.get("aliases", ()) if a in written), None
            )
            if source is not None:
                out += self._compare(ftype, self.w.resolve(source["type"], wt.namespace), fpath)
            elif "default" not in field:
                out.append(
                    Incompatibility(
                        fpath,
                        f"field {name!r}: {self.r.describe(ftype)}, no default",
                        f"{self.w.describe(wt)} has no field {name!r}",
                        f"reader field {name!r} is not written and has no default",
                    )
                )
            else:
                bad = self._bad_default(field["default"], ftype)
                if bad is not None:
                    out.append(
                        Incompatibility(
                            fpath,
                            f"field {name!r}: {self.r.describe(ftype)}, "
                            f"default {field['default']!r}",
                            f"{self.w.describe(wt)} has no field {name!r}",
                            f"reader field {name!r} is not written and its default is "
                            f"invalid: {bad}",
                        )
                    )
        self._memo[key] = out
        return out

    def _bad_default(self, value: object, t: _Type) -> str | None:
        """Why ``value`` is not a valid default of reader type ``t`` (None if it is)."""
        kind = t.kind
        if kind == "union":
            if not t.node:
                return "an empty union has no values"
            return self._bad_default(value, self.r.resolve(t.node[0], t.namespace))
        ok: bool
        if kind == "null":
            ok = value is None
        elif kind == "boolean":
            ok = isinstance(value, bool)
        elif kind in _INT_RANGE:
            low, high = _INT_RANGE[kind]
            ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        elif kind in ("float", "double"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind in ("string", "bytes"):
            ok = isinstance(value, str)
        elif kind == "enum":
            ok = value in t.node.get("symbols", ())
        elif kind == "fixed":
            ok = isinstance(value, str) and len(value) == t.node.get("size")
        elif kind == "array":
            if not isinstance(value, list):
                return f"{value!r} is not a JSON array"
            items = self.r.resolve(t.node.get("items"), t.namespace)
            return next((p for p in (self._bad_default(v, items) for v in value) if p), None)
        elif kind == "map":
            if not isinstance(value, dict):
                return f"{value!r} is not a JSON object"
            values = self.r.resolve(t.node.get("values"), t.namespace)
            return next(
                (p for p in (self._bad_default(v, values) for v in value.values()) if p),
                None,
            )
        else:  # record
            if not isinstance(value, dict):
                return f"{value!r} is not a JSON object for record {t.name}"
            for field in t.node.get("fields", ()):
                ftype = self.r.resolve(field["type"], t.namespace)
                if field["name"] in value:
                    bad = self._bad_default(value[field["name"]], ftype)
                    if bad is not None:
                        return f"field {field['name']!r}: {bad}"
                elif "default" not in field:
                    return f"record {t.name} needs field {field['name']!r}"
            return None
        return None if ok else f"{value!r} is not a {self.r.describe(t)}"
