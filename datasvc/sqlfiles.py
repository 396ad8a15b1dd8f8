"""The ``.sql`` statement file: its headers read into `Statement`s, every defect refused with ``file:line``.

A file holds one or more statements, each opened by a header of ``--`` lines::

    -- name: get_by_id :one
    -- Fetch one user by primary key.
    -- params: id
    -- expect-plan: Index Scan using users_pkey
    -- expect-plan-cache: generic
    -- route: replica
    -- retry: safe
    SELECT ... WHERE id = $1

A statement's name is prefixed with the namespace the caller gives (`datasvc.registry` gives the
file's folder under ``sql/``). Result kinds map onto asyncpg: ``one`` → ``fetchrow``, ``many`` →
``fetch``, ``value`` → ``fetchval``, ``exec`` → ``execute``. What a statement may do is declared beside
it, reviewed with the SQL, never guessed from it: ``route`` (may a hot standby answer it), ``retry`` (may
it be sent again after its connection died) and ``plan-cache`` (``custom``: sent as the unnamed statement,
planned for its values every time); see `Route`, `Retry`, `PlanCache`. Keys that start with ``expect-``
change nothing the service does: they state what the author expects of PostgreSQL, and a test checks it
(``expect-plan``: tests/test_plans.py; ``expect-plan-cache``: tests/users/test_listing_plans.py).
Placeholders are PostgreSQL's own ``$1 … $n``;
``params`` names them in order and must account for every one. Any defect refuses the whole load with
``file:line``, so a broken statement never reaches a running service.

A header may expand one template over a closed set, for what cannot be a parameter (a sort key, a
direction)::

    -- name: list_seek :many
    -- expand: sort, type in (created_at, timestamptz), (username, text)
    -- expand: dir, op in (asc, >), (desc, <)
    SELECT ... WHERE ({{sort}}, id) {{op}} ($1::{{type}}, $2) ORDER BY {{sort}} {{dir}}, id {{dir}}

makes one statement per combination, named by the first value of each line (``list_seek__created_at_asc``
…), each checked like a written-out one and listed by ``datasvc sql list``. A long value list may go on
over header lines that start with ``--``, two or more spaces and ``(``. ``{{marker}}`` is replaced in
the SQL, the description and the expected plan; a marker no ``expand`` line defines refuses the load.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Kind(StrEnum):
    ONE = "one"
    MANY = "many"
    VALUE = "value"
    EXEC = "exec"


class Route(StrEnum):
    """Where a statement may run: ``replica`` only for reads a hot standby can answer."""

    PRIMARY = "primary"
    REPLICA = "replica"


class Retry(StrEnum):
    """Whether a statement may be sent again after its connection died under it.

    ``safe``: running it twice is harmless (a read, or a write that is idempotent by construction).
    ``never``: it may have committed before the connection died, and only the caller can tell.
    """

    SAFE = "safe"
    NEVER = "never"


class PlanCache(StrEnum):
    """How the service sends a statement, and so how PostgreSQL plans it.

    ``auto``: asyncpg's named prepared statement, cached per connection; PostgreSQL plans it with its
    values five times, then keeps one generic plan if that costs no more (``expect-plan-cache: generic``
    says the author expects that, and a test checks it). ``custom``: PostgreSQL's unnamed statement,
    planned for its values on every execution (optional filters written as ``$n IS NULL OR …`` fold away
    only in a custom plan), at the price of a parse each time.
    """

    AUTO = "auto"
    CUSTOM = "custom"


class ExpectPlanCache(StrEnum):
    """``expect-plan-cache``: what PostgreSQL's plan cache settles on; checked by a test, changes nothing."""

    GENERIC = "generic"


_CHOICES: dict[str, tuple[str, ...]] = {
    "route": tuple(Route),
    "retry": tuple(Retry),
    "plan-cache": tuple(PlanCache),
    "expect-plan-cache": tuple(ExpectPlanCache),
}
# Keys renamed to say they are expectations: a file still using the old form is refused with the new one.
_RENAMED = {"plan": "expect-plan"}


class RegistryError(Exception):
    """A statement file is malformed; the message starts with ``file:line``."""


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    kind: Kind
    params: tuple[str, ...]
    description: str
    plan: str  # ``expect-plan``: the access path the author expects (tests/test_plans.py checks it)
    sql: str
    file: Path
    line: int
    route: Route = Route.PRIMARY
    retry: Retry = Retry.NEVER
    plan_cache: PlanCache = PlanCache.AUTO
    expect_plan_cache: ExpectPlanCache | None = None

    @property
    def text(self) -> str:
        """The SQL as sent: a static tag first, so pg_stat_statements and pg_stat_activity name it."""
        return f"/* {self.name} */ {self.sql}"

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>\S+)(?:\s+:(?P<kind>\S+))?\s*$")
_KEY_LINE = re.compile(
    r"^--\s*(?P<key>params|plan|expect-plan|expand|route|retry|plan-cache|expect-plan-cache):\s*(?P<value>.*?)\s*$"
)
_EXPAND = re.compile(r"^(?P<names>[a-z_][a-z0-9_]*(?:\s*,\s*[a-z_][a-z0-9_]*)*)\s+in\s+(?P<values>.+)$")
_TUPLE = re.compile(r"\(([^()]*)\)")
_CONTINUATION = re.compile(r"^\s*--\s{2,}\(")  # an indented "(…" line continues the expand line above
_MARKER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
# Strip what can hide a `$n` without being one: comments, quoted strings and dollar-quoted bodies.
_NOT_CODE = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|(\$[A-Za-z_][A-Za-z_0-9]*\$|\$\$).*?\1",
    re.DOTALL,
)
_PLACEHOLDER = re.compile(r"\$(\d+)")


def placeholders(sql: str) -> set[int]:
    """The ``$n`` numbers a statement uses, ignoring comments and string literals."""
    code = _NOT_CODE.sub(" ", sql)
    return {int(n) for n in _PLACEHOLDER.findall(code)}


@dataclass
class _Draft:
    name: str
    kind: Kind
    line: int
    description: list[str]
    params: tuple[str, ...] | None = None
    plan: str = ""
    expand_lines: list[tuple[str, str]] = field(default_factory=list)  # (value, file:line)
    declared: dict[str, str] = field(default_factory=dict)  # route, retry, plan-cache, … as written


@dataclass(frozen=True)
class Expansion:
    """One ``-- expand:`` line: marker names and the closed set of value tuples they range over."""

    names: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]


def parse_expand(value: str, where: str) -> Expansion:
    """``a, b in (x, y), (z, w)`` or ``a in x, z``: every value a plain token, every tuple full."""
    match = _EXPAND.match(value)
    if not match:
        raise RegistryError(f"{where}: expand must read 'name[, name…] in value, …', got {value!r}")
    names = tuple(n.strip() for n in match["names"].split(","))
    raw = match["values"].strip()
    if len(names) == 1 and "(" not in raw:
        groups = [(v.strip(),) for v in raw.split(",")]
    else:
        groups = [tuple(v.strip() for v in g.split(",")) for g in _TUPLE.findall(raw)]
        if _TUPLE.sub("", raw).replace(",", "").strip():
            raise RegistryError(f"{where}: expand values must be parenthesised tuples, got {raw!r}")
    for group in groups:
        if len(group) != len(names) or not all(v and not re.search(r"[\s;'\"{}]", v) for v in group):
            raise RegistryError(f"{where}: expand tuple {group!r} does not fit names {names!r}")
    if len(set(groups)) != len(groups) or len({g[0] for g in groups}) != len(groups):
        raise RegistryError(f"{where}: expand values must be distinct in their first element")
    if len(set(names)) != len(names):
        raise RegistryError(f"{where}: expand names must be distinct, got {names!r}")
    return Expansion(names, tuple(groups))


@dataclass
class _Block:
    """One statement's lines as written: its header (``--`` lines after ``-- name:``) and its body."""

    name_line: int
    header: list[tuple[int, str]] = field(default_factory=list)
    body: list[str] = field(default_factory=list)


def parse_file(path: Path, namespace: str) -> list[Statement]:
    """Split one file into statements; text before the first ``-- name:`` may only be comments."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Statement] = []
    for block in _blocks(lines, path):
        draft = _parse_header(lines[block.name_line - 1].strip(), block, path)
        out.extend(_expand(draft, block.body, namespace, path))
    return out


def _blocks(lines: list[str], path: Path) -> Iterator[_Block]:
    """Cut a file at each ``-- name:`` line; the ``--`` lines right after it are the header."""
    block: _Block | None = None
    in_header = False
    for lineno, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if _NAME_LINE.match(stripped):
            if block is not None:
                yield block
            block, in_header = _Block(name_line=lineno), True
        elif block is None:
            if stripped and not stripped.startswith("--"):
                raise RegistryError(f"{path}:{lineno}: SQL before the first '-- name:' header")
        elif in_header and stripped.startswith("--"):
            block.header.append((lineno, raw))
        else:
            in_header = False
            block.body.append(raw)
    if block is not None:
        yield block


def _parse_header(name_line: str, block: _Block, path: Path) -> _Draft:
    """The name line and the header lines of one block, checked, as a `_Draft`."""
    at = f"{path}:{block.name_line}"
    match = _NAME_LINE.match(name_line)
    assert match is not None  # _blocks cut the file at this line
    name, kind = match["name"], match["kind"]
    if not _IDENT.match(name):
        raise RegistryError(f"{at}: statement name {name!r} must match [a-z_][a-z0-9_]*")
    if kind is None:
        raise RegistryError(f"{at}: {name!r} has no result kind (:one, :many, :value, :exec)")
    try:
        parsed_kind = Kind(kind)
    except ValueError:
        raise RegistryError(f"{at}: unknown result kind :{kind} (use :one, :many, :value or :exec)") from None
    draft = _Draft(name=name, kind=parsed_kind, line=block.name_line, description=[])
    last_was_expand = False
    for lineno, raw in block.header:
        where = f"{path}:{lineno}"
        stripped = raw.strip()
        key = _KEY_LINE.match(stripped)
        if key is None:
            if _CONTINUATION.match(raw) and last_was_expand:
                value, first = draft.expand_lines[-1]
                draft.expand_lines[-1] = (f"{value} {stripped[2:].strip()}", first)
            else:
                draft.description.append(stripped[2:].strip())
                last_was_expand = False
            continue
        last_was_expand = key["key"] == "expand"
        _apply_key(draft, key["key"], key["value"], where)
    return draft


def _apply_key(draft: _Draft, key: str, value: str, where: str) -> None:
    if key == "params":
        draft.params = tuple(p for p in re.split(r"[,\s]+", value) if p)
        bad = [p for p in draft.params if not _IDENT.match(p)]
        if bad or len(set(draft.params)) != len(draft.params):
            raise RegistryError(f"{where}: params must be distinct identifiers, got {bad!r}")
    elif key in _RENAMED:
        raise RegistryError(
            f"{where}: '-- {key}:' is now '-- {_RENAMED[key]}:' (an expectation a test checks)"
        )
    elif key == "expect-plan":
        draft.plan = value
    elif key == "expand":
        draft.expand_lines.append((value, where))
    else:
        choices = _CHOICES[key]
        if value not in choices:
            raise RegistryError(f"{where}: {key} must be one of {', '.join(choices)}, got {value!r}")
        if key in draft.declared:
            raise RegistryError(f"{where}: {key} is declared twice")
        draft.declared[key] = value


def _expand(draft: _Draft, body: list[str], namespace: str, path: Path) -> list[Statement]:
    """The statement, or one per combination of its ``expand`` values, each built and checked."""
    location = f"{path}:{draft.line}"
    expand = [parse_expand(value, at) for value, at in draft.expand_lines]
    names = [n for e in expand for n in e.names]
    if len(set(names)) != len(names):
        raise RegistryError(f"{location}: {draft.name!r} defines an expand marker twice")
    out = []
    for combo in itertools.product(*(e.values for e in expand)):
        markers = {
            n: v
            for e, values in zip(expand, combo, strict=True)
            for n, v in zip(e.names, values, strict=True)
        }

        def fill(text: str, markers: dict[str, str] = markers) -> str:
            def one(m: re.Match[str]) -> str:
                if m[1] not in markers:
                    raise RegistryError(f"{location}: {draft.name!r} uses undefined marker {{{{{m[1]}}}}}")
                return markers[m[1]]

            return _MARKER.sub(one, text)

        suffix = "_".join(values[0] for values in combo)
        name = f"{draft.name}__{suffix}" if combo else draft.name
        if not _IDENT.match(name):
            raise RegistryError(f"{location}: expanded name {name!r} must match [a-z_][a-z0-9_]*")
        variant = _Draft(
            name=name,
            kind=draft.kind,
            line=draft.line,
            description=[fill(d) for d in draft.description],
            params=draft.params,
            plan=fill(draft.plan),
            declared=draft.declared,
        )
        out.append(_build(variant, [fill(line) for line in body], namespace, path))
    return out


def _build(draft: _Draft, body: list[str], namespace: str, path: Path) -> Statement:
    location = f"{path}:{draft.line}"
    sql = "\n".join(body).strip()
    sql = sql.rstrip().removesuffix(";").rstrip()
    if not _NOT_CODE.sub(" ", sql).strip():
        raise RegistryError(f"{location}: statement {draft.name!r} is empty")
    if ";" in _NOT_CODE.sub(" ", sql):
        raise RegistryError(f"{location}: {draft.name!r} holds more than one statement")
    description = " ".join(d for d in draft.description if d)
    if not description:
        raise RegistryError(f"{location}: {draft.name!r} needs a description line")
    params = draft.params or ()
    used = placeholders(sql)
    expected = set(range(1, len(params) + 1))
    if used != expected:
        raise RegistryError(
            f"{location}: {draft.name!r} declares params {list(params)} but its SQL uses "
            f"{['$' + str(n) for n in sorted(used)] or 'no placeholders'}"
        )
    route = Route(draft.declared.get("route", Route.PRIMARY))
    retry = Retry(draft.declared.get("retry", Retry.NEVER))
    if route is Route.REPLICA and (retry is not Retry.SAFE or draft.kind is Kind.EXEC):
        # A replica that dies mid-read has its read retried on the primary: only a read safe to repeat
        # may be routed there.
        raise RegistryError(
            f"{location}: {draft.name!r} is routed to a replica, so it must be a read "
            "declared '-- retry: safe'"
        )
    return Statement(
        name=f"{namespace}.{draft.name}",
        kind=draft.kind,
        params=params,
        description=description,
        plan=draft.plan,
        sql=sql,
        file=path,
        line=draft.line,
        route=route,
        retry=retry,
        plan_cache=PlanCache(draft.declared.get("plan-cache", PlanCache.AUTO)),
        expect_plan_cache=ExpectPlanCache(cache)
        if (cache := draft.declared.get("expect-plan-cache"))
        else None,
    )
