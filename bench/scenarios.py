"""The benchmark scenarios: what wrk asks each service, and the same SQL for pgbench.

A scenario's pgbench script is generated from the statement in our registry (``sql/``), with each
``$n`` replaced by a pgbench expression, so the physical limit runs exactly the SQL the service sends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datasvc.registry import Registry
from datasvc.sqlfiles import PlanCache

PREFIX = "/api/v1/users"
FIRSTS = [
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "zoe",
]
LASTS = [
    "smith",
    "jones",
    "brown",
    "taylor",
    "wilson",
    "davies",
    "evans",
    "thomas",
    "johnson",
    "roberts",
    "walker",
    "wright",
    "robinson",
    "thompson",
    "white",
    "hughes",
    "edwards",
    "green",
    "hall",
    "wood",
]
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
HASH = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"


def username_for(i: int) -> str:
    """Row i's username, as bench/seed.sql and lua/common.lua build it."""
    return f"{FIRSTS[i % 20]}_{LASTS[(i // 20) % 20]}_{i}"


def email_for(i: int) -> str:
    return f"{FIRSTS[i % 20]}.{LASTS[(i // 20) % 20]}.{i}@{DOMAINS[i % 4]}"


def _sql_array(items: Sequence[str]) -> str:
    return "(ARRAY[" + ",".join(f"'{x}'" for x in items) + "])"


# The same names in SQL, from pgbench's random :id.
_F = f"{_sql_array(FIRSTS)}[1 + :id::int % 20]"
_L = f"{_sql_array(LASTS)}[1 + (:id::int / 20) % 20]"
USERNAME_SQL = f"{_F} || '_' || {_L} || '_' || :id::int"
EMAIL_SQL = f"{_F} || '.' || {_L} || '.' || :id::int || '@' || {_sql_array(DOMAINS)}[1 + :id::int % 4]"
RANDOM_ID = r"\set id random(1, :n)"
BATCH = 100  # keys or users per batch request (lua/batch_*.lua read the same default)
# pgbench's batch: BATCH ids spread over the table from its random :id, as wrk's are uniform in 1..N.
BATCH_IDS_SQL = f"ARRAY(SELECT 1 + (:id::bigint + k * 7919) % :n FROM generate_series(1, {BATCH}) AS k)"  # noqa: S608


@dataclass(frozen=True, kw_only=True)
class Sql:
    """One registry statement with a pgbench expression per parameter."""

    name: str
    args: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    key: str
    title: str
    lua: str
    path: str = ""  # the URL path for static.lua (list scenarios); other scripts build their own
    peer_path: str | None = None  # the peer's equivalent request; None: the peer has no such endpoint
    peer_same: bool = False  # the peer takes exactly our request (lookups, create)
    peer_pair: str = ""  # compare with the peer's figure for this other scenario (it has no such request)
    ceiling: bool = False  # the ceiling app serves it too
    sql: tuple[Sql, ...] = ()
    pgbench_setup: str = RANDOM_ID
    # Afterwards rows with id > N are removed and the table vacuumed, so the next scenario sees N rows
    # and a visibility map as set as the peer's.
    writes: bool = False
    rows: int = 1  # users each request reads or writes (a batch's size): rows/s is rps times this

    def for_peer(self) -> bool:
        return self.peer_same or self.peer_path is not None


# Lists: the newest users first, 20 a page. {half} is N/2 (the deep offset page) and {cursor} the
# next_cursor of the page at ~90% depth, fetched from the running service before the scenarios run.
LIST = PREFIX + "?limit=20&sort_by=created_at&sort_order=desc"
PEER_LIST = PREFIX + "/?limit=20&sort_by=created_at&sort_order=desc&offset="
SEARCH = "sybil_hall"  # 1 row in 400: a person's name, as a caller would search for it
DEEP_KEYSET_FRACTION = 0.9
_NO_FILTER = ("NULL", "NULL", "NULL", "NULL")


def _list_sql(
    count: str, *, status: str = "NULL", search: str = "NULL", offset: str = "0"
) -> tuple[Sql, ...]:
    # status, is_verified, is_admin, search, count, limit (+1, as the handler asks), offset, key, id
    args = (status, "NULL", "NULL", search, f"'{count}'", "21", offset, "NULL", "NULL")
    return (Sql(name="users.list__created_at_desc", args=args),)


def _deep_keyset_sql() -> tuple[Sql, ...]:
    # created_at grows with id, so the row 90% deep in created_at DESC order is about id N/10; its
    # created_at ({deep_key}) is read before pgbench runs, as the service reads it from the cursor.
    args = (*_NO_FILTER, "'none'", "21", "0", "'{deep_key}'", ":deep_id")
    return (Sql(name="users.list__created_at_desc", args=args),)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        key="by_id",
        title="GET by id",
        lua="by_id.lua",
        peer_same=True,
        ceiling=True,
        sql=(Sql(name="users.get_by_id", args=(":id",)),),
    ),
    Scenario(
        key="by_username",
        title="GET by username",
        lua="by_username.lua",
        peer_same=True,
        ceiling=True,
        sql=(Sql(name="users.get_by_username", args=(USERNAME_SQL,)),),
    ),
    Scenario(
        key="by_email",
        title="GET by email",
        lua="by_email.lua",
        peer_same=True,
        ceiling=True,
        sql=(Sql(name="users.get_by_email", args=(EMAIL_SQL,)),),
    ),
    Scenario(
        key="create",
        title="POST create",
        lua="create.lua",
        peer_same=True,
        writes=True,
        pgbench_setup=r"\set r random(1, 9000000000000000)",
        sql=(
            Sql(
                name="users.create",
                args=(
                    "'pgb_' || :r || '@bench.example.com'",
                    "'pgb_' || :r",
                    f"'{HASH}'",
                    "'Bench User'",
                    "NULL",
                ),
            ),
        ),
    ),
    Scenario(
        key="create_idempotent",
        title="POST create with an Idempotency-Key",
        lua="create_idempotent.lua",
        writes=True,
    ),
    Scenario(
        key="batch_get",
        title=f"POST :batchGet of {BATCH} ids",
        lua="batch_get.lua",
        rows=BATCH,
        sql=(Sql(name="users.batch_get_by_id", args=(BATCH_IDS_SQL,)),),
    ),
    Scenario(
        key="batch_create",
        title=f"POST :batchCreate of {BATCH} users",
        lua="batch_create.lua",
        rows=BATCH,
        writes=True,
    ),
    Scenario(
        key="patch",
        title="PATCH full_name",
        lua="patch.lua",
        writes=True,  # updated rows clear visibility-map bits: the counts after it would read the heap
        sql=(Sql(name="users.update", args=(":id", """'{"full_name": "Bench Patched"}'""", "NULL")),),
    ),
    Scenario(
        key="auth_lookup",
        title="POST auth/lookup",
        lua="auth_lookup.lua",
        sql=(Sql(name="auth.lookup", args=(USERNAME_SQL,)),),
    ),
    Scenario(
        key="list_first_exact",
        title="list, first page, exact total",
        lua="static.lua",
        path=LIST + "&count=exact",
        peer_path=PEER_LIST + "0",
        sql=_list_sql("exact"),
        pgbench_setup="",
    ),
    Scenario(
        key="list_first_estimated",
        title="list, first page, estimated total",
        lua="static.lua",
        path=LIST + "&count=estimated",
        peer_pair="list_first_exact",
        sql=_list_sql("estimated"),
        pgbench_setup="",
    ),
    Scenario(
        key="list_first_none",
        title="list, first page, no total (keyset)",
        lua="static.lua",
        path=LIST + "&count=none",
        peer_pair="list_first_exact",
        sql=_list_sql("none"),
        pgbench_setup="",
    ),
    Scenario(
        key="list_active",
        title="list status=active, first page, exact total",
        lua="static.lua",
        path=LIST + "&status=active&count=exact",
        peer_path=PEER_LIST + "0&status=active",
        sql=_list_sql("exact", status="'active'"),
        pgbench_setup="",
    ),
    Scenario(
        key="list_search",
        title=f"list search={SEARCH}, first page, exact total",
        lua="static.lua",
        path=LIST + f"&search={SEARCH}&count=exact",
        peer_path=PEER_LIST + f"0&search={SEARCH}",
        sql=_list_sql("exact", search=f"'%{SEARCH.replace('_', chr(92) + '_')}%'"),
        pgbench_setup="",
    ),
    Scenario(
        key="list_search_estimated",
        title=f"list search={SEARCH}, first page, estimated total",
        lua="static.lua",
        path=LIST + f"&search={SEARCH}&count=estimated",
        peer_pair="list_search",
        sql=_list_sql("estimated", search=f"'%{SEARCH.replace('_', chr(92) + '_')}%'"),
        pgbench_setup="",
    ),
    Scenario(
        key="list_deep_offset",
        title="list offset=N/2, exact total",
        lua="static.lua",
        path=LIST + "&offset={half}&count=exact",
        peer_path=PEER_LIST + "{half}",
        sql=_list_sql("exact", offset=":half"),
        pgbench_setup=r"\set half :n / 2",
    ),
    Scenario(
        key="list_deep_keyset",
        title="list by cursor ~0.9 N deep, no total",
        lua="static.lua",
        path=LIST + "&cursor={cursor}",
        peer_pair="list_deep_offset",
        sql=_deep_keyset_sql(),
        pgbench_setup=r"\set deep_id {deep_id}",
    ),
)


def deep_offset(n: int) -> int:
    """The offset whose page ends ~90% deep: its next_cursor starts the deep keyset page."""
    return int(n * DEEP_KEYSET_FRACTION) - 20


def fill(path: str, n: int, cursor: str = "") -> str:
    return path.format(half=n // 2, cursor=cursor)


def selected(keys: Sequence[str]) -> list[Scenario]:
    known = {s.key for s in SCENARIOS}
    if unknown := [k for k in keys if k not in known]:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [s for s in SCENARIOS if not keys or s.key in keys]


def sample_request(scenario: Scenario, n: int, *, peer: bool = False) -> tuple[str, str, bytes | None]:
    """One request like those the scenario's Lua script sends: (method, path, JSON body)."""
    i = max(1, n // 3)
    match scenario.lua:
        case "by_id.lua":
            return "GET", f"{PREFIX}/{i}", None
        case "by_username.lua":
            return "GET", f"{PREFIX}/by_username/{username_for(i)}", None
        case "by_email.lua":
            return "GET", f"{PREFIX}/by_email/{email_for(i)}", None
        case "patch.lua":
            return "PATCH", f"{PREFIX}/{i}", b'{"full_name":"Bench Patched"}'
        case "auth_lookup.lua":
            return "POST", "/api/v1/auth/lookup", b'{"login":"' + username_for(i).encode() + b'"}'
        case "batch_get.lua":
            ids = ",".join(str(1 + (i + k * 7919) % n) for k in range(BATCH))
            return "POST", PREFIX + ":batchGet", f'{{"ids":[{ids}]}}'.encode()
        case "batch_create.lua":
            users = ",".join(
                f'{{"email":"smoke_batch_{k}@bench.example.com","username":"smoke_batch_{k}",'
                f'"hashed_password":"{HASH}"}}'
                for k in range(BATCH)
            )
            return "POST", PREFIX + ":batchCreate", f'{{"users":[{users}]}}'.encode()
        case "create.lua" | "create_idempotent.lua":
            body = (
                '{"email":"smoke_bench@bench.example.com","username":"smoke_bench",'
                f'"hashed_password":"{HASH}","full_name":"Bench User"}}'
            )
            return "POST", PREFIX + "/", body.encode()
    return "GET", (scenario.peer_path if peer else scenario.path) or "", None  # static: filled by caller


_PLACEHOLDER = re.compile(r"\$(\d+)")


def _substitute(text: str, args: tuple[str, ...]) -> str:
    return _PLACEHOLDER.sub(lambda m: f"({args[int(m.group(1)) - 1]})", text)


def deep_id(n: int) -> int:
    return max(1, n - int(n * DEEP_KEYSET_FRACTION))


def pgbench_script(scenario: Scenario, registry: Registry, *, n: int = 0, deep_key: str = "") -> str:
    """The scenario as a pgbench script: the registry's statement text, parameters as pgbench expressions."""
    lines = [f"-- {scenario.key}: generated by bench/ from sql/ (the statements datasvc sends)"]
    lines.append(scenario.pgbench_setup.replace("{deep_id}", str(deep_id(n))))
    for sql in scenario.sql:
        stmt = registry[sql.name]
        if len(sql.args) != len(stmt.params):
            raise ValueError(f"{scenario.key}: {sql.name} takes {len(stmt.params)} parameters")
        text = _substitute(stmt.text, tuple(a.replace("{deep_key}", deep_key) for a in sql.args))
        lines.append(text.rstrip().rstrip(";") + ";")
    return "\n".join(lines) + "\n"


def pgbench_protocol(scenario: Scenario, registry: Registry) -> str:
    """How the service sends the scenario's statements: unnamed when declared ``plan-cache: custom``."""
    custom = any(registry[sql.name].plan_cache is PlanCache.CUSTOM for sql in scenario.sql)
    return "extended" if custom else "prepared"


def write_pgbench_scripts(
    scenarios: Sequence[Scenario], registry: Registry, folder: Path, *, n: int, deep_key: str
) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for s in scenarios:
        if s.sql:
            path = folder / f"{s.key}.sql"
            path.write_text(pgbench_script(s, registry, n=n, deep_key=deep_key))
            out[s.key] = path
    return out
