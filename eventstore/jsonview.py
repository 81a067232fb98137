"""Plain-JSON views of events, for people and tools (CLI ``--json``, REST, JSONL export).

Payloads in JSON are their record's fields as plain values: an optional field is given as
its value (or left out), never in Avro's ``{"string": ...}`` union form; ``bytes`` travel as
base64; timestamps as ISO 8601 text. Validation happens here, at the trust boundary: an
unknown field, a missing one or a wrong type is refused with :class:`InvalidEvent` naming
the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from eventstore.envelope import RecordedEvent
from eventstore.errors import InvalidEvent
from eventstore.payloads import Payload, payload_class

_ADAPTERS: dict[type[Payload], TypeAdapter[Any]] = {}


def _adapter(cls: type[Payload]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


def payload_from_json(event_type: str, data: str | bytes) -> Payload:
    """Validate JSON text as the payload of ``event_type``.

    Args:
        event_type: Event type, e.g. ``"memory.Set"``.
        data: The payload record as a JSON object.

    Returns:
        The typed payload.

    Raises:
        InvalidEvent: unknown type, malformed JSON, or a field missing, unknown or of the
            wrong type (``field`` names it, e.g. ``payload.parts.0.text``).
    """
    try:
        cls = payload_class(event_type)
    except KeyError as exc:
        raise InvalidEvent(event_type, "type", str(exc.args[0])) from None
    try:
        return _as_payload(_adapter(cls).validate_json(data))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(part) for part in first["loc"])
        field = f"payload.{loc}" if loc else "payload"
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise InvalidEvent(event_type, field, f"{first['msg']}{more}") from None


def _as_payload(value: object) -> Payload:
    """Narrow a validated value to :class:`Payload` (it always is one)."""
    if not isinstance(value, Payload):
        raise TypeError(f"expected a payload, got {type(value).__name__}")
    return value


def payload_to_json(payload: Payload) -> dict[str, Any]:
    """Return the payload as JSON-ready plain values (see the module docstring)."""
    value = _adapter(type(payload)).dump_python(payload, mode="json")
    assert isinstance(value, dict)
    return value


def event_to_json(event: RecordedEvent) -> dict[str, Any]:
    """Return the envelope fields, ``position`` and payload as JSON-ready plain values."""
    return {
        "event_id": event.event_id,
        "thread_id": event.thread_id,
        "tenant": event.tenant,
        "seq": event.seq,
        "position": event.position,
        "type": event.type,
        "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
        "actor": event.actor,
        "version_vector": dict(event.version_vector),
        "causation_id": event.causation_id,
        "correlation_id": event.correlation_id,
        "idempotency_key": event.idempotency_key,
        "payload": payload_to_json(event.payload),
    }
