"""What `publish` checks against the event-type catalogue, in the caller's transaction.

WEBHOOKS_EVENT_TYPES=known refuses a type that ``webhooks.event_types`` lacks or has archived
(UnknownEventType); a deprecated type publishes, with a warning logged once per type per
process. WEBHOOKS_VALIDATE_PAYLOADS=warn|reject checks each payload, as it will be stored,
against its type's latest JSON Schema (the highest version in ``webhooks.event_type_schemas``):
``warn`` logs one warning per type and call and publishes, ``reject`` raises SchemaViolation
naming the path of the first error. A type with no schema passes. All of it happens before
anything is written; with ``open`` and ``off`` (the defaults) nothing is read at all.

Cost: one statement per call (`LOOKUP`, run by `producers.publish.Call` on the caller's
connection, in whichever driver's style), however many events it carries. It returns each distinct
type's flags and latest schema version, and the schema itself only when this process has not
compiled that version yet (`_COMPILED` keeps one compiled validator per type, the latest; a
version, once added, never changes, and its creation time tells a recreated one apart). A
schema version added in another transaction is seen by the first call whose snapshot has it.
Measured (publish_many of 1,000 300-byte events, local Postgres): ``known`` costs nothing
visible; validating (jsonschema_rs) costs ~1 us an event, ~0.8 times the events per second
(jsonschema took ~100 us, 0.2 times).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from producers.errors import PayloadMismatch, UnknownEventType
from producers.settings import EventTypes, ValidatePayloads

__all__ = ["LOOKUP", "Entry", "Lookup", "enforce", "needed"]

log = logging.getLogger("webhooks.producers")

#: Each distinct type's flags and latest schema version; the schema itself only when asked
#: (the first parameter) and not compiled yet. Parameters: `Lookup.params`.
LOOKUP = """
select a.name, t.name is not null, coalesce(t.deprecated, false), coalesce(t.archived, false),
       s.version, s.created_at,
       case when %s and (s.version, s.created_at) is distinct from (a.version, a.created)
            then s.schema::text end
from unnest(%s::text[], %s::int[], %s::timestamptz[]) as a(name, version, created)
left join webhooks.event_types t on t.name = a.name
left join lateral (
    select version, created_at, schema from webhooks.event_type_schemas
    where event_type = t.name order by version desc limit 1
) s on true
"""


@dataclass(frozen=True)
class Compiled:
    """A type's latest schema version, compiled."""

    version: int
    created: datetime
    validator: Any  # `producers.schemas.compile_schema`'s


@dataclass(frozen=True)
class Entry:
    """What the catalogue says about one event type, as the caller's transaction sees it."""

    known: bool
    deprecated: bool
    archived: bool
    schema: Compiled | None


#: The latest compiled schema of each event type this process validated against.
_COMPILED: dict[str, Compiled] = {}
#: Deprecated types already warned about by this process.
_DEPRECATED_SAID: set[str] = set()


class Lookup:
    """One catalogue statement for the distinct types of a call, and how to read its rows."""

    def __init__(self, types: Iterable[str], validate: bool) -> None:
        self.types = list(dict.fromkeys(types))
        self.validate = validate
        # The cache as this call saw it: another thread may replace an entry meanwhile.
        self.cached = {t: _COMPILED.get(t) for t in self.types} if validate else {}

    def params(self) -> tuple[Any, ...]:
        """Return the statement's parameters."""
        cached = [self.cached.get(t) for t in self.types]
        return (
            self.validate,
            self.types,
            [c.version if c else None for c in cached],
            [c.created if c else None for c in cached],
        )

    def entries(self, rows: Iterable[Sequence[Any]]) -> dict[str, Entry]:
        """Return each type's entry, compiling (and caching) the schemas not compiled yet."""
        found: dict[str, Entry] = {}
        for name, known, deprecated, archived, version, created, text in rows:
            compiled = None
            if self.validate and version is not None:
                compiled = self.cached.get(name)
                if text is not None:
                    compiled = Compiled(version, created, _compile(json.loads(text)))
                    _COMPILED[name] = compiled
            found[name] = Entry(known, deprecated, archived, compiled)
        return {t: found[t] for t in self.types}


def _compile(schema: Any) -> Any:
    # Imported on first use: a producer that never validates does not load jsonschema_rs.
    from producers import schemas

    return schemas.compile_schema(schema)


def enforce(
    found: Mapping[str, Entry],
    items: Sequence[tuple[str, str]],
    event_types: EventTypes,
    validate: ValidatePayloads,
) -> None:
    """Apply the modes to a call's (type, payload JSON) items; raise or log as they say."""
    for name, entry in found.items():
        if event_types == "known" and (not entry.known or entry.archived):
            raise UnknownEventType(name, archived=entry.archived)
        if entry.deprecated and name not in _DEPRECATED_SAID:
            _DEPRECATED_SAID.add(name)
            log.warning("event type %r is deprecated in the event-type catalogue", name)
    if validate == "off" or all(entry.schema is None for entry in found.values()):
        return
    from producers.schemas import mismatch

    failed: dict[str, tuple[int, PayloadMismatch]] = {}
    for name, body in items:
        compiled = found[name].schema
        if compiled is None:
            continue
        # The payload as it will be stored (a tuple is an array, keys are strings).
        error = mismatch(compiled.validator, json.loads(body))
        if error is None:
            continue
        error = PayloadMismatch(
            error.path, f"{error.message} (event type {name!r}, schema version {compiled.version})"
        )
        if validate == "reject":
            raise error
        count, first = failed.get(name, (0, error))
        failed[name] = (count + 1, first)
    for count, first in failed.values():
        also = f" ({count} events of this call)" if count > 1 else ""
        log.warning("payload %s%s; published anyway (validate=warn)", first, also)


def needed(event_types: EventTypes, validate: ValidatePayloads) -> bool:
    """Return whether these modes read the catalogue (``open`` and ``off`` read nothing)."""
    return event_types != "open" or validate != "off"
