"""The benchmark harness's argument parsing, pgbench scripts and tables (no load is generated here)."""

from __future__ import annotations

import pytest

from bench.__main__ import TARGETS, parse_args
from bench.load import pinned, split_cpus
from bench.report import render
from bench.scenarios import SCENARIOS, pgbench_script
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT


def _row(target: str, scenario: str, rps: float, p99: float) -> dict[str, object]:
    return {"target": target, "scenario": scenario, "rps": rps, "p50_ms": p99 / 3, "p99_ms": p99, "errors": 0}


def _run(results: list[dict[str, object]], rss: dict[str, dict[str, int]]) -> dict[str, object]:
    meta = {
        "started": "2026-01-01T00:00:00+00:00",
        "n": 1000,
        "duration": 3,
        "warmup": 1,
        "conns": 32,
        "threads": 1,
        "loadavg": "0.10 0.20 0.30",
    }
    return {"meta": meta, "results": results, "rss": rss}


def _cells(markdown: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]


def test_defaults_select_every_target_and_scenario(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TARGETS", "SCENARIOS"):
        monkeypatch.delenv(name, raising=False)
    args = parse_args([])
    assert args.targets == list(TARGETS)
    assert [s.key for s in args.selected] == [s.key for s in SCENARIOS]


def test_scenarios_and_targets_are_comma_lists() -> None:
    args = parse_args(["--scenarios", "by_id,create", "--targets", "datasvc-1w", "--duration", "3"])
    assert [s.key for s in args.selected] == ["by_id", "create"]
    assert (args.targets, args.duration) == (["datasvc-1w"], 3)


@pytest.mark.parametrize(
    "argv", [["--scenarios", "by_idd"], ["--targets", "nginx"]], ids=["scenario", "target"]
)
def test_unknown_names_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_pgbench_scripts_carry_the_registry_statement_with_pgbench_parameters() -> None:
    registry = Registry.load(PROJECT_ROOT / "sql")
    by_id = next(s for s in SCENARIOS if s.key == "by_id")
    script = pgbench_script(by_id, registry)
    assert registry["users.get_by_id"].text.replace("$1", "(:id)") in script
    assert "$" not in script.replace("$2b$12$", "")  # every placeholder became a pgbench expression


def test_report_divides_pair_by_pair_and_judges_the_targets() -> None:
    data = _run(
        [
            _row("peer", "by_id", 1000.0, 60.0),
            _row("datasvc-1w", "by_id", 6000.0, 10.0),
            _row("ceiling", "by_id", 10000.0, 5.0),
            _row("datasvc-2w", "by_id", 9000.0, 8.0),
        ],
        {"peer": {"peak_kb": 80 * 1024}, "datasvc-1w": {"peak_kb": 60 * 1024}},
    )
    text = render(data)
    pairs = _cells(text.split("### Pair by pair")[1].split("###")[0])
    # req/s vs the peer, p99 vs the peer, vs the ceiling, 2 workers vs 1, vs pgbench, CPU per request
    assert pairs[2] == ["by_id", "6.00", "6.00", "0.60", "1.50", "-", "-"]
    goals = {row[0]: row[1:] for row in _cells(text.split("### Targets")[1])}
    assert goals["GET by id: req/s ≥ 5.5x peer"] == ["6.00x", "met"]
    assert goals["GET by id: ≥ 0.9x the ceiling"] == ["0.60x", "MISSED"]
    assert goals["GET by id, tokens configured: ≥ 0.9x the ceiling"] == ["-", "not measured"]
    assert goals["POST create: ≥ 3x peer"] == ["-", "not measured"]
    assert goals["peak RSS ≤ peer's (peer ÷ ours ≥ 1)"] == ["1.33x", "met"]


def test_rounds_are_counted_and_interleaved() -> None:
    assert parse_args(["--rounds", "5"]).rounds == 5
    assert parse_args([]).rounds == 1


def test_behind_pgbouncer_the_service_has_a_client_connection_per_request_in_flight() -> None:
    assert parse_args([]).pooler_clients == parse_args([]).conns == 32
    assert parse_args(["--conns", "64"]).pooler_clients == 64
    assert parse_args(["--pooler-clients", "10"]).pooler_clients == 10


def test_several_rounds_give_medians_and_ratios_round_by_round() -> None:
    # The machine was slow for both targets in round 1: ratios are taken round by round (0.96, 0.95, 0.86),
    # never one round's figure against another's, and their median is reported.
    by_round = [(1000.0, 960.0), (600.0, 570.0), (1100.0, 950.0)]
    rows = []
    for i, (direct, pooled) in enumerate(by_round):
        rows.append({**_row("direct-app", "create", direct, 20.0 + i), "round": i, "errors": 1})
        rows.append({**_row("pgbouncer-1.24", "create", pooled, 30.0), "round": i})
    data = _run(rows, {})
    meta = data["meta"]
    assert isinstance(meta, dict)
    text = render({**data, "meta": {**meta, "rounds": 3}})
    assert "3 rounds, every target in turn" in text
    measured = {(r[0], r[1]): r for r in _cells(text.split("### Measured")[1].split("###")[0])}
    # Medians of req/s, p50 and p99; the errors summed.
    assert measured[("create", "direct-app")][2:6] == ["1,000.0", "7.0", "21.0", "3"]
    through = _cells(text.split("### Through PgBouncer")[1].split("###")[0])
    assert through[2][:2] == ["create", "0.95 (0.86 to 0.96, 3 rounds)"]  # 0.96, 0.95, 0.86
    goals = {row[0]: row[1:] for row in _cells(text.split("### Targets")[1])}
    assert goals["POST create through PgBouncer 1.24: ≥ 0.95x direct"] == ["0.95x", "met"]
    assert goals["GET by id through PgBouncer 1.24: ≥ 0.95x direct"] == ["-", "not measured"]


@pytest.mark.parametrize(
    ("cpus", "split"),
    [({0, 1}, ("0", "1")), ({0, 1, 2, 3}, ("0,1", "2,3")), ({3, 1, 2}, ("1", "2,3"))],
    ids=["2 cores", "4 cores", "an odd affinity"],
)
def test_pin_gives_the_service_the_first_half_of_the_cpus_and_the_load_the_rest(
    cpus: set[int], split: tuple[str, str]
) -> None:
    assert split_cpus(cpus) == split
    assert pinned(split[1], ["wrk", "-c32"]) == ["taskset", "-c", split[1], "wrk", "-c32"]
    assert pinned(None, ["wrk"]) == ["wrk"]


def test_pin_is_refused_on_one_cpu_and_off_unless_asked() -> None:
    with pytest.raises(ValueError, match="at least 2 CPUs"):
        split_cpus({0})
    args = parse_args([])
    assert (args.pin, args.service_cpus, args.load_cpus) == (False, None, None)


def test_a_pinned_run_says_so_in_its_report() -> None:
    data = _run([_row("direct-app", "by_id", 1000.0, 10.0)], {})
    meta = data["meta"]
    assert isinstance(meta, dict)
    assert "pinned" not in render(data)
    text = render({**data, "meta": {**meta, "pin": {"service": "0", "load": "1"}}})
    assert "pinned: each service on CPU 0, wrk and pgbench on CPU 1" in text


def test_pgbouncer_with_callers_is_divided_by_its_own_baseline() -> None:
    # Four callers through PgBouncer against the same four callers direct, not against the one-caller run.
    rps = {
        "direct-app": 1000.0,
        "pgbouncer-1.24": 950.0,
        "direct-app-tokens": 800.0,
        "pgbouncer-1.24-tokens": 600.0,
    }
    data = _run([_row(target, "by_id", r, 10.0) for target, r in rps.items()], {})
    pooled = _cells(render(data).split("### Through PgBouncer")[1].split("###")[0])
    assert pooled[0][1] == "PgBouncer 1.24 (cache on) ÷ direct-app"
    assert pooled[0][4] == "PgBouncer 1.24 (cache on), 4 callers ÷ direct-app-tokens"
    assert (pooled[2][1], pooled[2][4]) == ("0.95", "0.75")


def test_pgbouncers_own_cpu_is_reported_per_request() -> None:
    # 20% of a core at 10,000 req/s is 20 µs a request; a direct target has no pooler to measure.
    rows = [
        {**_row("direct-app", "by_id", 10_000.0, 5.0), "pooler_cpu": None},
        {**_row("pgbouncer-1.24", "by_id", 10_000.0, 5.0), "pooler_cpu": 20.0},
    ]
    text = render(_run(rows, {}))
    header, _, *cells = _cells(text.split("### Measured")[1].split("###")[0])
    column = header.index("pooler µs/req")
    assert {row[1]: row[column] for row in cells} == {"direct-app": "-", "pgbouncer-1.24": "20"}
