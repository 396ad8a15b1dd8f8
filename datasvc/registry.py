"""The query registry: every ``.sql`` file under ``sql/`` parsed into named statements at start-up.

A file holds one or more statements, each opened by a header of ``--`` lines::

    -- name: get_by_id :one
    -- Fetch one user by primary key.
    -- params: id
    -- plan: Index Scan using users_pkey
    SELECT ... WHERE id = $1

The namespace is the folder under ``sql/`` (``sql/users/get_by_id.sql`` → ``users.get_by_id``); a file
directly in ``sql/`` uses its stem. Result kinds map onto asyncpg: ``one`` → ``fetchrow``, ``many`` →
``fetch``, ``value`` → ``fetchval``, ``exec`` → ``execute``. Placeholders are PostgreSQL's own ``$1 … $n``;
``params`` names them in order and must account for every one. Any defect refuses the whole load with
``file:line``, so a broken statement never reaches a running service.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Kind(StrEnum):
    ONE = "one"
    MANY = "many"
    VALUE = "value"
    EXEC = "exec"


class RegistryError(Exception):
    """A statement file is malformed; the message starts with ``file:line``."""


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    kind: Kind
    params: tuple[str, ...]
    description: str
    plan: str
    sql: str
    file: Path
    line: int

    @property
    def text(self) -> str:
        """The SQL as sent: a static tag first, so pg_stat_statements and pg_stat_activity name it."""
        return f"/* {self.name} */ {self.sql}"

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}"


_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>\S+)(?:\s+:(?P<kind>\S+))?\s*$")
_KEY_LINE = re.compile(r"^--\s*(?P<key>params|plan):\s*(?P<value>.*?)\s*$")
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


class Registry(Mapping[str, Statement]):
    """Named statements, read-only once loaded."""

    def __init__(self, statements: Mapping[str, Statement]) -> None:
        self._statements = dict(sorted(statements.items()))

    def __getitem__(self, name: str) -> Statement:
        return self._statements[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)

    @classmethod
    def load(cls, root: Path) -> Registry:
        """Parse every ``*.sql`` file below ``root``; raise `RegistryError` on the first defect."""
        if not root.is_dir():
            raise RegistryError(f"{root}: SQL folder not found")
        statements: dict[str, Statement] = {}
        for path in sorted(root.rglob("*.sql")):
            for stmt in parse_file(path, namespace_for(root, path)):
                if stmt.name in statements:
                    first = statements[stmt.name]
                    raise RegistryError(
                        f"{stmt.location}: duplicate statement name {stmt.name!r} (first at {first.location})"
                    )
                statements[stmt.name] = stmt
        if not statements:
            raise RegistryError(f"{root}: no statements found")
        return cls(statements)


def namespace_for(root: Path, path: Path) -> str:
    parts = path.relative_to(root).parent.parts
    return ".".join(parts) if parts else path.stem


@dataclass
class _Draft:
    name: str
    kind: Kind
    line: int
    description: list[str]
    params: tuple[str, ...] | None = None
    plan: str = ""


def parse_file(path: Path, namespace: str) -> list[Statement]:
    """Split one file into statements; text before the first ``-- name:`` may only be comments."""
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Statement] = []
    draft: _Draft | None = None
    body: list[str] = []
    in_header = False

    def where(lineno: int) -> str:
        return f"{path}:{lineno}"

    def finish() -> None:
        if draft is None:
            return
        out.append(_build(draft, body, namespace, path))

    for lineno, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        match = _NAME_LINE.match(stripped)
        if match:
            finish()
            name, kind = match["name"], match["kind"]
            if not _IDENT.match(name):
                raise RegistryError(f"{where(lineno)}: statement name {name!r} must match [a-z_][a-z0-9_]*")
            if kind is None:
                raise RegistryError(
                    f"{where(lineno)}: {name!r} has no result kind (:one, :many, :value, :exec)"
                )
            try:
                parsed_kind = Kind(kind)
            except ValueError:
                raise RegistryError(
                    f"{where(lineno)}: unknown result kind :{kind} (use :one, :many, :value or :exec)"
                ) from None
            draft = _Draft(name=name, kind=parsed_kind, line=lineno, description=[])
            body = []
            in_header = True
            continue
        if draft is None:
            if stripped and not stripped.startswith("--"):
                raise RegistryError(f"{where(lineno)}: SQL before the first '-- name:' header")
            continue
        if in_header and stripped.startswith("--"):
            key = _KEY_LINE.match(stripped)
            if key and key["key"] == "params":
                draft.params = tuple(p for p in re.split(r"[,\s]+", key["value"]) if p)
                bad = [p for p in draft.params if not _IDENT.match(p)]
                if bad or len(set(draft.params)) != len(draft.params):
                    raise RegistryError(f"{where(lineno)}: params must be distinct identifiers, got {bad!r}")
            elif key and key["key"] == "plan":
                draft.plan = key["value"]
            else:
                draft.description.append(stripped[2:].strip())
            continue
        in_header = False
        body.append(raw)
    finish()
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
    return Statement(
        name=f"{namespace}.{draft.name}",
        kind=draft.kind,
        params=params,
        description=description,
        plan=draft.plan,
        sql=sql,
        file=path,
        line=draft.line,
    )
