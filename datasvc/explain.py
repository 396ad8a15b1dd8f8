"""``datasvc sql explain``: the plan of a registered statement, run against a real database.

This is the one place where SQL text is composed: a fixed ``EXPLAIN (…)`` prefix, chosen from a closed set,
in front of a registered statement's own text. Parameter values never enter the text; they are bound as
parameters, converted to the types PostgreSQL inferred when preparing the statement. ``ANALYZE`` executes
the statement, so it always runs inside a transaction that is rolled back: explaining a write changes
nothing.

`report` adds what a reader needs to judge the plan: the planner's row estimate of each table it reads,
and, when the plan scans a table sequentially where the statement's ``-- expect-plan:`` header expects no such
scan, the plan again with sequential scans discouraged (``explain.discourage_seqscan``, local to the
rolled-back transaction): on a tiny table a scan is cheaper than any index, which is not a defect.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from datasvc.registry import Registry
from datasvc.sqlfiles import Statement
from datasvc.statements import execute

# Below this many rows a table fits in a few pages, and reading them all costs the planner less than an
# index descent plus a heap fetch: a sequential scan there is the planner being right, not a missing index.
TINY_ROWS = 1000


class ExplainError(ValueError):
    """The parameters given do not fit the statement."""


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"t", "true", "1", "yes", "on"}:
        return True
    if lowered in {"f", "false", "0", "no", "off"}:
        return False
    raise ValueError("not a boolean")


def _bytea(raw: str) -> bytes:
    """Hex, as PostgreSQL prints bytea (``\\x`` optional)."""
    return bytes.fromhex(raw.removeprefix("\\x"))


def _json(raw: str) -> str:
    orjson.loads(raw)  # fail here, with the parameter's name, rather than in the server
    return raw


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "int2": int,
    "int4": int,
    "int8": int,
    "float4": float,
    "float8": float,
    "numeric": decimal.Decimal,
    "bool": _bool,
    "bytea": _bytea,
    "json": _json,
    "jsonb": _json,
    "uuid": uuid.UUID,
    "date": dt.date.fromisoformat,
    "timestamp": dt.datetime.fromisoformat,
    "timestamptz": dt.datetime.fromisoformat,
}


def convert(raw: str, type_name: str) -> Any:
    """A command-line string as the Python value asyncpg binds for ``type_name`` (arrays: comma-separated)."""
    # An array: asyncpg names the built-in ones `int8[]`, others after pg_type (`_int8`).
    element = type_name.removesuffix("[]") if type_name.endswith("[]") else type_name.removeprefix("_")
    if element != type_name:
        return [convert(item, element) for item in raw.split(",")] if raw else []
    return _CONVERTERS.get(type_name, str)(raw)


def _prefix(*, analyze: bool, json: bool) -> str:
    options = ["ANALYZE", "BUFFERS"] if analyze else []
    if json:
        options.append("FORMAT JSON")
    return f"EXPLAIN ({', '.join(options)}) " if options else "EXPLAIN "


async def bind(conn: asyncpg.Connection, stmt: Statement, raw: Mapping[str, str | None]) -> list[Any]:
    """Parameter values in header order, converted to the statement's parameter types (None: NULL)."""
    unknown = sorted(set(raw) - set(stmt.params))
    prepared = await conn.prepare(stmt.text)
    types = [t.name for t in prepared.get_parameters()]
    wanted = ", ".join(f"{p} ({t})" for p, t in zip(stmt.params, types, strict=True)) or "none"
    missing = [p for p in stmt.params if p not in raw]
    if unknown or missing:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise ExplainError(f"{stmt.name} takes parameters: {wanted}; {'; '.join(problems)}")
    values = []
    for name, type_name in zip(stmt.params, types, strict=True):
        value = raw[name]
        try:
            values.append(None if value is None else convert(value, type_name))
        except ValueError as exc:
            raise ExplainError(f"--param {name}={raw[name]!r}: not a valid {type_name} ({exc})") from None
    return values


async def explain_json(
    conn: asyncpg.Connection,
    stmt: Statement,
    params: Mapping[str, str | None],
    *,
    analyze: bool = True,
) -> dict[str, Any]:
    """The plan as PostgreSQL's JSON document (the top ``Plan`` node and its timings)."""
    rows = await _run(conn, stmt, params, analyze=analyze, json=True)
    return _document(rows[0][0])


def _document(value: Any) -> dict[str, Any]:
    """EXPLAIN's JSON: text from a bare connection, already decoded from a pool with our json codec."""
    document: list[dict[str, Any]] = orjson.loads(value) if isinstance(value, str) else value
    return document[0]


async def _run(
    conn: asyncpg.Connection, stmt: Statement, params: Mapping[str, str | None], *, analyze: bool, json: bool
) -> list[Any]:
    values = await bind(conn, stmt, params)
    transaction = conn.transaction()
    await transaction.start()
    try:
        rows: list[Any] = await conn.fetch(_prefix(analyze=analyze, json=json) + stmt.text, *values)
    finally:
        await transaction.rollback()  # ANALYZE ran the statement: undo whatever it wrote
    return rows


@dataclass(frozen=True)
class Report:
    """A statement's plan with what explains it."""

    plan: list[str]  # EXPLAIN's text, as PostgreSQL prints it
    rows: dict[str, int]  # each table the plan reads -> the planner's row estimate
    scanned: list[str]  # tables read by a Seq Scan that the statement's `-- expect-plan:` does not expect
    without_scans: list[str]  # the plan with sequential scans discouraged, when `scanned`

    @property
    def tiny(self) -> bool:
        """Every unexpected scan is of a table small enough that scanning it is the cheaper plan."""
        return bool(self.scanned) and all(self.rows.get(t, TINY_ROWS) < TINY_ROWS for t in self.scanned)


async def report(
    conn: asyncpg.Connection,
    registry: Registry,
    stmt: Statement,
    params: Mapping[str, str | None],
    *,
    analyze: bool = True,
) -> Report:
    """The plan of ``stmt``, its tables' row estimates, and the plan without scans where one surprises."""
    values = await bind(conn, stmt, params)
    transaction = conn.transaction()
    await transaction.start()
    try:
        plan = [row[0] for row in await conn.fetch(_prefix(analyze=analyze, json=False) + stmt.text, *values)]
        # The plan's shape from a plain EXPLAIN: ANALYZE must not run the statement (a write) twice.
        shape = (await conn.fetch(_prefix(analyze=False, json=True) + stmt.text, *values))[0][0]
        nodes = list(_nodes(_document(shape)["Plan"]))
        tables = sorted({n["Relation Name"] for n in nodes if "Relation Name" in n})
        found = await execute(conn, registry["explain.table_rows"], (tables,))
        rows = {r["table_name"]: r["row_estimate"] for r in found if r["row_estimate"] is not None}
        scanned: list[str] = []
        if stmt.plan and "Seq Scan" not in stmt.plan:
            scanned = sorted({n["Relation Name"] for n in nodes if n["Node Type"] == "Seq Scan"})
        without_scans: list[str] = []
        if scanned:
            await execute(conn, registry["explain.discourage_seqscan"], ())
            rows_again = await conn.fetch(_prefix(analyze=False, json=False) + stmt.text, *values)
            without_scans = [row[0] for row in rows_again]
    finally:
        await transaction.rollback()  # ANALYZE ran the statement, and the setting is local to this
    return Report(plan=plan, rows=rows, scanned=scanned, without_scans=without_scans)


def _nodes(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def node_types(plan: Mapping[str, Any]) -> list[str]:
    """Every node of a JSON plan, depth first, as ``"Node Type"`` plus ``" on relation"`` or index name.

    A write's node is named as the text plan names it (``Insert``, ``Update``, ``Delete``, ``Merge``), not
    ``ModifyTable`` as the JSON's node type says, so a write's ``-- expect-plan: Insert on users`` reads
    the same in either form.
    """
    found = []
    stack = [plan.get("Plan", plan)]
    while stack:
        node = stack.pop()
        label = node["Operation"] if node["Node Type"] == "ModifyTable" else node["Node Type"]
        if "Index Name" in node:
            label += f" using {node['Index Name']}"
        if "Relation Name" in node:
            label += f" on {node['Relation Name']}"
        found.append(label)
        stack.extend(reversed(node.get("Plans", [])))
    return found
