"""Markdown tables from a run's results: every measurement, the ratios pair by pair, the issue's targets."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.scenarios import SCENARIOS

Row = dict[str, Any]
ORDER = (
    "peer",
    "datasvc-1w",
    "direct-app",
    "pgbouncer-1.24",
    "pgbouncer-1.24-socket",
    "pgbouncer-1.18",
    "direct-app-tokens",
    "pgbouncer-1.24-tokens",
    "replica",
    "replica-direct",
    "datasvc-1w-nolog",
    "datasvc-1w-tokens",
    "datasvc-1w-traced-1pct",
    "datasvc-1w-traced-all",
    "datasvc-1w-unnamed",
    "datasvc-2w",
    "ceiling",
    "pgbench",
    "pgbench-session",
)
BASELINE = "direct-app"  # the same service, mode and role without PgBouncer; else datasvc-1w
# datasvc-1w behind PgBouncer (bench/pooler.py): the column heads of the "Through PgBouncer" table, and the
# target without PgBouncer each is divided by
POOLED = {
    "pgbouncer-1.24": ("PgBouncer 1.24 (cache on)", BASELINE),
    "pgbouncer-1.24-socket": ("PgBouncer 1.24 (cache on), Unix socket", BASELINE),
    "pgbouncer-1.18": ("PgBouncer 1.18 (cache 0)", BASELINE),
    "pgbouncer-1.24-tokens": ("PgBouncer 1.24 (cache on), 4 callers", "direct-app-tokens"),
}
REPLICATED = ("replica", "replica-direct")  # datasvc-1w on a primary with a standby (bench/replica.py)
MAIN = "datasvc-1w"  # compared with the peer and the ceiling, which also run one worker
NOLOG = "datasvc-1w-nolog"  # optional: the same with DATASVC_ACCESS_LOG=off
TOKENS = "datasvc-1w-tokens"  # optional: the same with bearer tokens configured (and sent)
TRACED_1PCT, TRACED_ALL = "datasvc-1w-traced-1pct", "datasvc-1w-traced-all"  # optional: tracing on (issue 24)


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table, numbers right-aligned."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(r: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            + " |"
        )

    sep = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


class Results:
    """Lookup of one run's rows by (target, scenario); over several rounds (``--rounds``), their medians."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.meta: dict[str, Any] = data["meta"]
        self.rss: dict[str, dict[str, int]] = data.get("rss", {})
        self.rounds: dict[tuple[str, str], list[Row]] = {}
        for r in data["results"]:
            self.rounds.setdefault((r["target"], r["scenario"]), []).append(r)
        self.rows: dict[tuple[str, str], Row] = {k: _median_row(v) for k, v in self.rounds.items()}
        present = {t for t, _ in self.rows}
        self.targets = [t for t in ORDER if t in present] + sorted(present - set(ORDER))
        self.scenarios = [s for s in SCENARIOS if any(k == s.key for _, k in self.rows)]

    def get(self, target: str, scenario: str, key: str) -> Any:
        row = self.rows.get((target, scenario))
        return None if row is None else row.get(key)

    def round_ratios(self, target: str, base: str, scenario: str, key: str = "rps") -> list[float]:
        """``target`` ÷ ``base`` round by round: each pair measured seconds apart, in the same turn."""
        ours = {r.get("round", 0): r.get(key) for r in self.rounds.get((target, scenario), [])}
        theirs = {r.get("round", 0): r.get(key) for r in self.rounds.get((base, scenario), [])}
        pairs = (ratio(ours[i], theirs[i]) for i in sorted(ours.keys() & theirs.keys()))
        return [r for r in pairs if r is not None]

    def peer(self, scenario: str, key: str) -> Any:
        """The peer's figure to compare ``scenario`` with (its own request, or the closest one it serves)."""
        s = next((x for x in SCENARIOS if x.key == scenario), None)
        return None if s is None else self.get("peer", s.peer_pair or s.key, key)


def _median_row(rows: list[Row]) -> Row:
    """One row for several rounds: the median of each figure, the errors and logged statuses summed."""
    if len(rows) == 1:
        return rows[0]
    merged: Row = {"target": rows[0]["target"], "scenario": rows[0]["scenario"], "rounds": len(rows)}
    for key in rows[0]:
        values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if key in merged or key == "round" or not values:
            continue
        merged[key] = sum(values) if key == "errors" else statistics.median(values)
    statuses: dict[str, int] = {}
    for r in rows:
        for status, count in (r.get("statuses") or {}).items():
            statuses[status] = statuses.get(status, 0) + count
    merged["statuses"] = statuses
    return merged


def _errors(row: Row) -> str:
    """The error count, and the statuses the service logged meanwhile (e.g. ``24 (logged 503: 26)``)."""
    n = int(row.get("errors", 0))
    statuses = row.get("statuses") or {}
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items()))
    return f"{n:,} (logged {detail})" if n and detail else f"{n:,}"


def _per_request(cpu_pct: float | None, rps: float) -> int | None:
    """CPU time per request in µs: less sensitive to the machine's other load than req/s."""
    return None if cpu_pct is None or not rps else round(cpu_pct / 100 / rps * 1e6)


def measured(res: Results) -> str:
    rows = []
    for s in res.scenarios:
        for t in res.targets:
            r = res.rows.get((t, s.key))
            if r is not None:
                rows.append(
                    [
                        s.key,
                        t,
                        r["rps"],
                        r.get("p50_ms"),
                        r.get("p99_ms"),
                        _errors(r),
                        r.get("svc_cpu"),
                        _per_request(r.get("svc_cpu"), r["rps"]),
                        r.get("pg_cpu"),
                        _per_request(r.get("pg_cpu"), r["rps"]),
                        _per_request(r.get("pooler_cpu"), r["rps"]),
                        r.get("box_busy"),
                    ]
                )
    hdr = ["scenario", "target", "req/s", "p50 ms", "p99 ms", "errors", "svc CPU%", "svc µs/req", "pg CPU%"]
    hdr += ["pg µs/req", "pooler µs/req", "box busy%"]
    return table(hdr, rows)


def pairs(res: Results) -> str:
    rows = []
    for s in res.scenarios:
        rps = {t: res.get(t, s.key, "rps") for t in (MAIN, NOLOG, "ceiling", "datasvc-2w", "pgbench")}
        ratios = [
            ratio(rps[MAIN], res.peer(s.key, "rps")),
            ratio(res.peer(s.key, "p99_ms"), res.get(MAIN, s.key, "p99_ms")),
            ratio(rps[MAIN], rps["ceiling"]),
            ratio(rps["datasvc-2w"], rps[MAIN]),
            ratio(rps[MAIN], rps["pgbench"]),
        ]
        cpu = {
            t: _per_request(res.get(t, s.key, "svc_cpu"), res.get(t, s.key, "rps") or 0)
            for t in (MAIN, "ceiling")
        }
        ratios.append(ratio(cpu["ceiling"], cpu[MAIN]))
        if NOLOG in res.targets:
            ratios.append(ratio(rps[NOLOG], rps["ceiling"]))
        rows.append([s.key, *(fmt(r, 2) for r in ratios)])
    hdr = [
        "scenario",
        "1w ÷ peer req/s",
        "peer p99 ÷ 1w p99",
        "1w ÷ ceiling req/s",
        "2w ÷ 1w req/s",
        "1w ÷ pgbench",
        "ceiling CPU/req ÷ 1w CPU/req",
    ]
    if NOLOG in res.targets:
        hdr.append("1w access log off ÷ ceiling")
    return table(hdr, rows)


def pooled(res: Results) -> str:
    """Each pooler target against the direct one, per scenario it ran."""
    rows = []
    bases = {t: _pooled_base(res, base) for t, (_, base) in POOLED.items()}
    for s in res.scenarios:
        through = [_round_by_round(res, t, bases[t], s.key) for t in POOLED]
        if any(r != "-" for r in through):
            rows.append([s.key, *through])
    return table(["scenario", *(f"{head} ÷ {bases[t]}" for t, (head, _) in POOLED.items())], rows)


def _pooled_base(res: Results, base: str) -> str:
    """What a pooler target is divided by: ``base``; for `BASELINE`, absent from the run, datasvc-1w."""
    return MAIN if base == BASELINE and base not in res.targets else base


def _round_by_round(res: Results, target: str, base: str, scenario: str) -> str:
    """The median of the ratios round by round, and their range when there were several rounds."""
    ratios = res.round_ratios(target, base, scenario)
    if not ratios:
        return "-"
    median = fmt(statistics.median(ratios), 2)
    if len(ratios) == 1:
        return median
    return f"{median} ({fmt(min(ratios), 2)} to {fmt(max(ratios), 2)}, {len(ratios)} rounds)"


def replicated(res: Results) -> str:
    """With a replica against without, on the same primary; and that primary against the direct target."""
    rows = []
    for s in res.scenarios:
        with_replica, without = REPLICATED
        if res.get(with_replica, s.key, "rps") is not None or res.get(without, s.key, "rps") is not None:
            rows.append(
                [
                    s.key,
                    _round_by_round(res, with_replica, without, s.key),
                    _round_by_round(res, without, MAIN, s.key),
                ]
            )
    return table(["scenario", "replica ÷ replica-direct", "replica-direct ÷ datasvc-1w"], rows)


def memory(res: Results) -> str:
    rows = [
        [t, v.get("idle_kb", 0) / 1024, v.get("peak_kb", 0) / 1024, v.get("hwm_kb", 0) / 1024]
        for t, v in res.rss.items()
    ]
    return table(["target", "idle RSS MB", "peak RSS MB (sampled, whole tree)", "sum of VmHWM MB"], rows)


@dataclass(frozen=True)
class Goal:
    text: str
    value: Callable[[Results], float | None]
    at_least: float  # the goal is met when value >= at_least


def _vs_peer(key: str, target: str = MAIN) -> Callable[[Results], float | None]:
    return lambda res: ratio(res.get(target, key, "rps"), res.peer(key, "rps"))


def _vs_ceiling(key: str, target: str = MAIN) -> Callable[[Results], float | None]:
    return lambda res: ratio(res.get(target, key, "rps"), res.get("ceiling", key, "rps"))


def _p99_ratio(key: str, target: str = MAIN) -> Callable[[Results], float | None]:
    return lambda res: ratio(res.get("peer", key, "p99_ms"), res.get(target, key, "p99_ms"))


def _vs_by_id(key: str, target: str) -> Callable[[Results], float | None]:
    return lambda res: ratio(res.get(target, key, "rps"), res.get(target, "by_id", "rps"))


def _rows_vs(key: str, base: str) -> Callable[[Results], float | None]:
    """Users per second of a batch scenario ÷ those of its one-user counterpart, same target, same run."""
    rows = {s.key: s.rows for s in SCENARIOS}
    return lambda res: ratio(
        _times(res.get(MAIN, key, "rps"), rows.get(key, 1)),
        _times(res.get(MAIN, base, "rps"), rows.get(base, 1)),
    )


def _times(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _p99_within(key: str, base: str, factor: float) -> Callable[[Results], float | None]:
    """``factor`` times the base scenario's p99 ÷ this one's: at least 1 when within the factor."""
    return lambda res: ratio(_times(res.get(MAIN, base, "p99_ms"), factor), res.get(MAIN, key, "p99_ms"))


def _session(key: str) -> Callable[[Results], float | None]:
    return lambda res: ratio(res.get("pgbench-session", key, "rps"), res.get("pgbench", key, "rps"))


def _keyset_flatness(res: Results) -> float | None:
    return ratio(res.get(MAIN, "list_deep_keyset", "rps"), res.get(MAIN, "list_first_none", "rps"))


def _estimated_vs_keyset(res: Results) -> float | None:
    return ratio(res.get(MAIN, "list_first_estimated", "rps"), res.get(MAIN, "list_first_none", "rps"))


def _pooled(key: str) -> Callable[[Results], float | None]:
    """PgBouncer 1.24 ÷ the direct target: the median of the round-by-round ratios."""

    def value(res: Results) -> float | None:
        ratios = res.round_ratios("pgbouncer-1.24", _pooled_base(res, BASELINE), key)
        return statistics.median(ratios) if ratios else None

    return value


def _traced(key: str, target: str) -> Callable[[Results], float | None]:
    """A traced target ÷ the same service untraced: the median of the round-by-round ratios."""

    def value(res: Results) -> float | None:
        ratios = res.round_ratios(target, MAIN, key)
        return statistics.median(ratios) if ratios else None

    return value


def _rss(res: Results) -> float | None:
    return ratio(res.rss.get("peer", {}).get("peak_kb"), res.rss.get(MAIN, {}).get("peak_kb"))


GOALS = (
    # Issue 10: every production feature on (`datasvc-1w`), and the same with tokens configured.
    *(
        goal
        for key, what in (
            ("by_id", "GET by id"),
            ("by_username", "GET by username"),
            ("by_email", "GET by email"),
        )
        for target, how in ((MAIN, ""), (TOKENS, ", tokens configured"))
        for goal in (
            Goal(f"{what}{how}: req/s ≥ 5.5x peer", _vs_peer(key, target), 5.5),
            Goal(f"{what}{how}: p99 ≤ 1/5 peer's (peer p99 ÷ ours ≥ 5)", _p99_ratio(key, target), 5.0),
            Goal(f"{what}{how}: ≥ 0.9x the ceiling", _vs_ceiling(key, target), 0.9),
        )
    ),
    Goal("auth lookup: ≥ 0.9x the GET by id rate", _vs_by_id("auth_lookup", MAIN), 0.9),
    Goal("auth lookup, tokens configured: ≥ 0.9x its GET by id rate", _vs_by_id("auth_lookup", TOKENS), 0.9),
    Goal("pgbench by id with the pool's session settings: ≥ 0.95x plain", _session("by_id"), 0.95),
    Goal("POST create: ≥ 3x peer", _vs_peer("create"), 3.0),
    Goal("list first page, exact total: ≥ 5x peer", _vs_peer("list_first_exact"), 5.0),
    Goal("list status=active, exact total: ≥ 5x peer", _vs_peer("list_active"), 5.0),
    Goal("list first page, estimated total: ≥ 20x peer", _vs_peer("list_first_estimated"), 20.0),
    Goal("list first page, estimated total: ≥ 0.8x the keyset first page", _estimated_vs_keyset, 0.8),
    Goal("list first page, no count: ≥ 20x peer", _vs_peer("list_first_none"), 20.0),
    Goal("deep keyset page: within 1.5x of the first keyset page (ratio ≥ 0.67)", _keyset_flatness, 1 / 1.5),
    Goal("deep keyset page: ≥ 100x the peer's deep offset page", _vs_peer("list_deep_keyset"), 100.0),
    Goal("peak RSS ≤ peer's (peer ÷ ours ≥ 1)", _rss, 1.0),
    # Issue 23: batches and idempotency keys, against the one-user requests of the same run.
    Goal("batchGet of 100 ids: users/s ≥ 20x GET by id", _rows_vs("batch_get", "by_id"), 20.0),
    Goal(
        "batchGet of 100 ids: p99 ≤ 3x GET by id's (3x its p99 ÷ ours ≥ 1)",
        _p99_within("batch_get", "by_id", 3),
        1.0,
    ),
    Goal("batchCreate of 100 users: users/s ≥ 10x POST create", _rows_vs("batch_create", "create"), 10.0),
    Goal(
        "POST create with an Idempotency-Key: ≥ 0.85x without", _rows_vs("create_idempotent", "create"), 0.85
    ),
    # Issue 24: tracing configured, against the same service without it, round by round.
    Goal("GET by id, tracing sampling 1 %: ≥ 0.97x untraced", _traced("by_id", TRACED_1PCT), 0.97),
    Goal("GET by id, tracing every request: ≥ 0.80x untraced", _traced("by_id", TRACED_ALL), 0.80),
    Goal("GET by id through PgBouncer 1.24: ≥ 0.95x direct", _pooled("by_id"), 0.95),
    Goal("POST create through PgBouncer 1.24: ≥ 0.95x direct", _pooled("create"), 0.95),
)


def goals(res: Results) -> str:
    rows = []
    for g in GOALS:
        v = g.value(res)
        verdict = "not measured" if v is None else ("met" if v >= g.at_least else "MISSED")
        rows.append([g.text, fmt(v, 2) + ("x" if v is not None else ""), verdict])
    return table(["target (datasvc 1 worker vs peer 1 worker, same run)", "measured", "verdict"], rows)


def checkouts(res: Results) -> str:
    """Each ``NAME:<target>`` against ``<target>`` (this checkout): medians of the round-by-round ratios."""
    rows = []
    for other in (t for t in res.targets if ":" in t):
        target = other.rpartition(":")[2]
        for s in res.scenarios:
            rps = res.round_ratios(target, other, s.key)
            p99 = res.round_ratios(target, other, s.key, "p99_ms")
            if rps:
                rows.append([s.key, f"{target} ÷ {other}", _median(rps), _median(p99), _spread(rps)])
    names = ", ".join(f"{k} = {v}" for k, v in res.meta.get("checkouts", {}).items())
    hdr = ["scenario", "pair", "req/s ratio", "p99 ratio", "req/s ratios by round"]
    return (f"checkouts: {names}\n\n" if names else "") + table(hdr, rows)


def _median(values: list[float]) -> str:
    return fmt(statistics.median(values), 3) if values else "-"


def _spread(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def render(data: dict[str, Any]) -> str:
    res = Results(data)
    m = res.meta
    head = (
        f"## datasvc benchmark {m['started']} (N={m['n']:,}, {m['duration']} s per run after {m['warmup']} s "
        f"warm-up, wrk -t{m['threads']} -c{m['conns']}; load {m.get('loadavg', '?')})"
    )
    if m.get("rounds", 1) > 1:
        head += f"\n\n{m['rounds']} rounds, every target in turn: each figure is the median of its rounds"
    if pin := m.get("pin"):
        head += (
            f"\n\npinned: each service on CPU {pin['service']}, wrk and pgbench on CPU {pin['load']}; "
            "PostgreSQL and PgBouncer unpinned"
        )
    if m.get("commit"):
        dirty = m.get("uncommitted_files", 0)
        head += f"\n\ncode: commit {m['commit']}" + (f" plus {dirty} uncommitted file(s)" if dirty else "")
    parts = [head, "### Measured", measured(res), "### Pair by pair", pairs(res)]
    if any(t in res.targets for t in POOLED):
        parts += ["### Through PgBouncer (transaction mode)", pooled(res)]
    if any(t in res.targets for t in REPLICATED):
        parts += ["### With a read replica", replicated(res)]
    if any(":" in t for t in res.targets):
        parts += ["### Against other checkouts (--checkout)", checkouts(res)]
    if res.rss:
        parts += ["### Memory", memory(res)]
    parts += ["### Targets", goals(res)]
    return "\n\n".join(parts) + "\n"
