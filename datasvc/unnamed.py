"""Sending a statement as PostgreSQL's unnamed statement in one round trip: Parse, Bind, Execute, Sync.

The unnamed statement is parsed anew on each use, so it never has the five custom plans behind it after
which a named one may switch to a generic plan: it is always planned with its values (unless a role
forces generic plans), with no session ``SET``, which a transaction pooler would leak to other clients.

Two callers (`datasvc.statements`): a ``-- plan-cache: custom`` statement (planned for its values every
time), and a sampled request's statement, whose text carries its own ``traceparent`` and so differs on
every execution. asyncpg's own way to send an unnamed statement (``conn.prepare(text, name="")``) is a
Parse/Describe round trip before the Parse/Bind/Execute one, and as much Python again to read the
description and set up the codecs.

Here the parameter and column types of a registry statement are learnt once per connection: the first
time it is sent this way, asyncpg prepares the registry text as the unnamed statement (Describe, type
introspection, codecs), and that `PreparedStatementState` is kept as the statement's *template* for as
long as the connection lives. Every sending after that writes a Parse of the text to send (the registry
text, or it with its comment: the same SQL, so PostgreSQL infers the same types) and has asyncpg's
``bind_execute`` send the Bind, Execute and Sync behind it, with the template's codecs; one Sync covers
all four, so a transaction pooler keeps them on one server connection.

Private asyncpg APIs, pinned in pyproject.toml and guarded by tests/test_private_apis.py:
``Connection._protocol`` and ``._transport``; ``Protocol.bind_execute``, ``queries_count``,
``_is_cancelling``, ``_wait_for_cancellation`` and ``prepare(state=)``; ``PreparedStatement._state``,
``PreparedStatementState`` and its ``_init_codecs``; and that
``bind_execute`` with a prepared state writes Bind, Execute and Sync (no Parse) and takes the
ParseComplete in front of its answer.

A template assumes the statement's parameter and column types do not change while the connection
lives, as asyncpg's statement cache does; a migration that changes a column's type under a running
statement needs the service restarted (migrations are additive, docs/operations.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from asyncpg.protocol.protocol import PreparedStatementState

from datasvc.sqlfiles import Kind

if TYPE_CHECKING:
    import asyncpg

# Per connection (its protocol, which lives exactly as long), per registry text: the template. A weak
# map, so a closed connection's templates go with it.
_templates: WeakKeyDictionary[Any, dict[str, Any]] = WeakKeyDictionary()

_LIMITS = {Kind.ONE: 1, Kind.VALUE: 1, Kind.MANY: 0, Kind.EXEC: 0}


async def execute(
    conn: asyncpg.Connection, kind: Kind, template: str, text: str, args: tuple[Any, ...]
) -> Any:
    """Run ``text`` (``template``, the registry text, or it with a comment) as the unnamed statement.

    The answer is what asyncpg's method for ``kind`` gives: a record or None, a list, a value, or the
    command status.
    """
    protocol = conn._protocol
    states = _templates.get(protocol)
    if states is None:
        states = _templates[protocol] = {}
    state = states.get(template)
    if state is None:
        state = states[template] = await _describe(conn, template)
    if protocol._is_cancelling():  # the cancel's answer first, then our Parse (as bind_execute would)
        await protocol._wait_for_cancellation()
    exec_ = kind is Kind.EXEC
    sent = protocol.queries_count  # bind_execute counts a query once its Bind is written
    conn._transport.write(_parse(text))
    try:
        result = await protocol.bind_execute(state, args, "", _LIMITS[kind], exec_, None)
    except BaseException:
        if protocol.queries_count == sent:
            # Refused before its Bind was written (an argument it cannot encode, a connection in use or
            # closed): our Parse went alone, and its ParseComplete would reach the next statement's answer.
            conn.terminate()
        raise
    if exec_:
        return result[1].decode()
    if kind is Kind.MANY:
        return result
    if not result:
        return None
    return result[0] if kind is Kind.ONE else result[0][0]


async def _describe(conn: asyncpg.Connection, template: str) -> Any:
    """``template``'s state as the unnamed statement: its types, its codecs, and marked prepared.

    asyncpg's own (``conn.prepare(name="")``) also introspects types it does not know yet, but marks the
    state unprepared when its statement cache is off (PgBouncer 1.18) or the introspection replaced the
    unnamed statement; `bind_execute` would then send a Parse of the template after ours. Then the types
    are described again into a state of ours, which stays prepared.
    """
    state = (await conn.prepare(template, name=""))._state
    if not state.prepared:
        record_class, ignore = state.record_class, state.ignore_custom_codec
        state = PreparedStatementState("", template, conn._protocol, record_class, ignore)
        await conn._protocol.prepare("", template, None, state=state, record_class=record_class)
        state._init_codecs()
    return state


def _parse(text: str) -> bytes:
    """The Parse message of ``text`` as the unnamed statement, no parameter types given (PostgreSQL infers
    them, as for asyncpg's own Parse); asyncpg's connections always use UTF-8."""
    body = b"\x00" + text.encode() + b"\x00\x00\x00"
    return b"P" + (len(body) + 4).to_bytes(4, "big") + body
