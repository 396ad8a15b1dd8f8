"""Issue 9.2: read replicas, proven against a real hot standby (``pg_basebackup -R -X stream``).

A throwaway primary and its standby, each a cluster of the test's own (`tests.support.cluster`),
migrated with the project's migrations; the service runs against them with ``DATASVC_REPLICA_URLS``.
Where a statement ran is read from each server's own ``pg_stat_statements`` (every statement is sent
tagged with its registry name), never from the service's word. Waits are on conditions
(``/health/ready`` saying so); timing bounds are generous and say why.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from datasvc import consistency, migrations, replicas
from datasvc.app import create_app
from datasvc.consistency import HEADER
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings
from datasvc.sqlfiles import Route
from tests.support import load
from tests.support.cluster import Cluster

pytestmark = pytest.mark.slow

REGISTRY = Registry.load(PROJECT_ROOT / "sql")
STATS = "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"


@dataclass
class Pair:
    primary: Cluster
    standby: Cluster

    def remove(self) -> None:
        self.standby.remove()
        self.primary.remove()


def _pair() -> Pair:
    primary = Cluster("datasvc-replica-")
    if not (primary.bin.parent / "lib" / "pg_stat_statements.so").exists():
        primary.remove()
        pytest.skip(f"{primary.bin} has no pg_stat_statements (Debian's postgresql-15 package ships it)")
    standby: Cluster | None = None
    try:
        primary.options = STATS
        primary.init()
        primary.start()
        migrations.apply(primary.url, PROJECT_ROOT / "migrations")
        asyncio.run(_create_statement_stats(primary.url))
        standby = Cluster("datasvc-replica-")  # its free port picked right before it binds it
        standby.options = STATS
        standby.basebackup(primary)
        standby.start()
    except BaseException:
        if standby is not None:
            standby.remove()
        primary.remove()
        raise
    return Pair(primary, standby)


async def _create_statement_stats(url: str) -> None:
    async with load.admin(url) as admin:
        await admin.run("replicas.create_statement_stats")


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    made = _pair()
    try:
        yield made
    finally:
        made.remove()


def _settings(tmp_path: Path, database_url: str, replica_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        replica_urls=replica_url,
        pool_min_size=1,
        pool_max_size=4,
        acquire_timeout=2.0,
        connect_timeout=2.0,
        access_log=False,
        data_dir=tmp_path,
    )


def _until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> float:
    """Poll ``predicate`` until true; returns the seconds it took (printed in the figures, not asserted).

    The timeout only bounds a hang: how soon a replica leaves or rejoins rotation depends on the sampling
    period and on how loaded the machine is, so the gate asserts that it happens, not how fast.
    """
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what} not reached within {timeout} s"
        time.sleep(0.01)
    return time.monotonic() - started


def _replica(client: TestClient) -> dict[str, Any]:
    body = client.get("/health/ready").json()
    state: dict[str, Any] = body["replicas"][0]
    return state


def _in_rotation(client: TestClient) -> bool:
    return bool(_replica(client)["in_rotation"])


def _create(client: TestClient) -> Any:
    return client.post("/api/v1/users", json=load.unique_user("replica"))


async def _calls(admin: load.Admin, name: str) -> int:
    calls: int = await admin.run("replicas.calls", f"/* {name} */%")
    return calls


async def test_each_statement_runs_where_its_header_says(pair: Pair, tmp_path: Path) -> None:
    settings = _settings(tmp_path, pair.primary.url, pair.standby.url)
    async with load.admin(pair.primary.url) as primary, load.admin(pair.standby.url) as standby:
        assert (await primary.run("replicas.server"))["in_recovery"] is False
        assert (await standby.run("replicas.server"))["in_recovery"] is True
        assert (await standby.run("replicas.server"))["port"] == pair.standby.port

        ran = [
            "users.create",
            "users.get_by_id",
            "users.get_by_username",
            "users.get_by_email",
            "users.list__created_at_desc",
            "users.list_search__username_asc",
            "users.update",
            "auth.lookup",
            "users.delete",
            "replica.insert_lsn",
        ]
        before = {n: (await _calls(primary, n), await _calls(standby, n)) for n in ran}
        with TestClient(create_app(settings)) as client:
            _until(lambda: _in_rotation(client), what="replica in rotation")
            user = _create(client).json()
            uid, name = user["id"], user["username"]
            assert client.get(f"/api/v1/users/{uid}").status_code in (200, 404)  # 404: not replayed yet
            client.get(f"/api/v1/users/by_username/{name}")
            client.get(f"/api/v1/users/by_email/{user['email']}")
            assert client.get("/api/v1/users").status_code == 200
            listing = {"search": name, "sort_by": "username", "sort_order": "asc"}
            search = client.get("/api/v1/users", params=listing)
            assert search.status_code == 200
            assert client.patch(f"/api/v1/users/{uid}", json={"bio": "x"}).status_code == 200
            assert client.post("/api/v1/auth/lookup", json={"login": name}).status_code == 200
            assert client.delete(f"/api/v1/users/{uid}").status_code == 204
            assert _in_rotation(client)  # no read fell back to the primary for want of a replica
        after = {n: (await _calls(primary, n), await _calls(standby, n)) for n in ran}
        sampled_on_primary = await _calls(primary, "replica.replay_state")
        sampled_on_standby = await _calls(standby, "replica.replay_state")

    moved = {n: (after[n][0] - before[n][0], after[n][1] - before[n][1]) for n in ran}
    for name, (on_primary, on_standby) in moved.items():
        if REGISTRY[name].route is Route.REPLICA:
            assert (on_primary, on_standby) == (0, 1), f"{name} (route: replica) ran {moved[name]}"
        else:
            assert on_standby == 0, f"{name} (route: primary) ran {moved[name]}"
            assert on_primary >= 1, f"{name} (route: primary) ran {moved[name]}"
    # The lag tracker asks the standby, never the primary, for its replay position.
    assert sampled_on_standby > 0
    assert sampled_on_primary == 0
    print(f"(primary, standby) executions per statement: {moved}")


async def test_a_write_read_back_with_its_token_is_always_found(pair: Pair, tmp_path: Path) -> None:
    settings = _settings(tmp_path, pair.primary.url, pair.standby.url)
    async with load.admin(pair.standby.url) as standby:
        await_calls = await _calls(standby, "users.get_by_id")
        with TestClient(create_app(settings)) as client:
            _until(lambda: _in_rotation(client), what="replica in rotation")
            found, tokens = 0, set()
            for _ in range(100):
                created = _create(client)
                assert created.status_code == 201
                token = created.headers[HEADER]
                tokens.add(token)
                read = client.get(f"/api/v1/users/{created.json()['id']}", headers={HEADER: token})
                found += read.status_code == 200
            on_replica = await _calls(standby, "users.get_by_id") - await_calls
            # The control: the same without the token. Not asserted (it depends on replay timing), reported.
            missed = 0
            for _ in range(100):
                created = _create(client)
                missed += client.get(f"/api/v1/users/{created.json()['id']}").status_code == 404
            uid = _create(client).json()["id"]
            patched = client.patch(f"/api/v1/users/{uid}", json={"bio": "y"})
            deleted = client.delete(f"/api/v1/users/{uid}")
            fresh = _create(client).json()["id"]
            bad = client.get(f"/api/v1/users/{fresh}", headers={HEADER: "not-a-token"})
    figure = (
        f"write then read with the token: {found}/100 found ({on_replica} served by the replica); "
        f"without it: {missed}/100 not found"
    )
    assert found == 100, figure
    assert len(tokens) == 100, figure  # each write moved the WAL position
    assert HEADER in patched.headers
    assert HEADER in deleted.headers
    assert bad.status_code == 200  # not a token: served by the primary, which has every write
    print(figure)


async def test_a_token_no_sample_has_seen_yet_is_asked_of_the_replica(pair: Pair, tmp_path: Path) -> None:
    """A token read moments after its write finds the last sample older than the token: the replica is
    asked how far it has replayed, and answers the read if it has the write; the primary otherwise."""
    settings = _settings(tmp_path, pair.primary.url, pair.standby.url)
    async with load.admin(pair.primary.url) as primary, load.admin(pair.standby.url) as standby:
        with TestClient(create_app(settings)) as client:
            _until(lambda: _in_rotation(client), what="replica in rotation")
            before = await _calls(standby, "users.get_by_id")
            for _ in range(20):
                created = _create(client)
                token = created.headers[HEADER]
                # Replayed on the standby now; the service's last sample (every 0.25 s) is almost always
                # older: before the replica was asked, 2 to 5 reads of 100 went to it.
                await _replayed(standby, consistency.decode(token))
                read = client.get(f"/api/v1/users/{created.json()['id']}", headers={HEADER: token})
                assert read.status_code == 200
            on_replica = await _calls(standby, "users.get_by_id") - before
            # A position the replica has not reached (far ahead of this test's writes): the primary answers.
            on_primary = await _calls(primary, "users.get_by_id")
            ahead = client.get(f"/api/v1/users/{created.json()['id']}", headers={HEADER: "FF/0"})
            assert ahead.status_code == 200
            assert await _calls(primary, "users.get_by_id") == on_primary + 1
    assert on_replica == 20


async def _replayed(standby: load.Admin, lsn: int, timeout: float = 15.0) -> None:
    """Wait until the standby has replayed ``lsn`` (generous: replay on a loaded 2-core machine)."""
    deadline = time.monotonic() + timeout
    while await standby.run("replicas.replayed") < lsn:
        assert time.monotonic() < deadline, f"standby did not replay {lsn} within {timeout} s"
        await asyncio.sleep(0.002)


async def test_paused_replay_moves_reads_to_the_primary_and_back(pair: Pair, tmp_path: Path) -> None:
    settings = _settings(tmp_path, pair.primary.url, pair.standby.url)
    async with load.admin(pair.primary.url) as primary, load.admin(pair.standby.url) as standby:
        with TestClient(create_app(settings)) as client:
            _until(lambda: _in_rotation(client), what="replica in rotation")
            uid = _create(client).json()["id"]
            try:
                await standby.run("replicas.pause")
                # Within a sampling period or so (replicas.PERIOD) on a quiet machine: the figure says.
                out_after = _until(lambda: not _in_rotation(client), what="replica out of rotation")
                assert "paused" in _replica(client)["why_out"]
                # Writes go on; the paused replica falls behind, measured from WAL positions.
                _create(client)
                _until(lambda: (_replica(client)["lag_seconds"] or 0) > 0.2, what="lag to show")
                before = (await _calls(primary, "users.get_by_id"), await _calls(standby, "users.get_by_id"))
                assert all(client.get(f"/api/v1/users/{uid}").status_code == 200 for _ in range(10))
                after = (await _calls(primary, "users.get_by_id"), await _calls(standby, "users.get_by_id"))
            finally:
                await standby.run("replicas.resume")
            back_after = _until(lambda: _in_rotation(client), what="replica back in rotation")
            client.get(f"/api/v1/users/{uid}")
            on_standby_again = await _calls(standby, "users.get_by_id") - after[1]
    figure = (
        f"replay paused: out of rotation after {out_after:.3f} s (period {replicas.PERIOD} s); "
        f"resumed: back after {back_after:.3f} s"
    )
    assert after[0] - before[0] == 10, figure
    assert after[1] == before[1], figure
    assert on_standby_again == 1, figure
    print(figure)


async def test_a_replica_behind_by_more_than_the_limit_leaves_rotation_until_it_catches_up(
    pair: Pair, tmp_path: Path
) -> None:
    """Lag from WAL positions: commits applied 2 s late (recovery_min_apply_delay), limit 0.5 s."""
    settings = _settings(tmp_path, pair.primary.url, pair.standby.url).with_overrides(replica_max_lag=0.5)
    async with load.admin(pair.standby.url) as standby:
        with TestClient(create_app(settings)) as client:
            _until(lambda: _in_rotation(client), what="replica in rotation")
            try:
                await standby.run("replicas.apply_delay_on")
                await standby.run("replicas.reload")
                started = time.monotonic()
                # Writes go on; each commit waits 2 s on the standby before it is applied.
                _until(lambda: _create(client).status_code == 201 and not _in_rotation(client), what="out")
                out_after = time.monotonic() - started
                state = _replica(client)
            finally:
                await standby.run("replicas.apply_delay_off")
                await standby.run("replicas.reload")
            back_after = _until(lambda: _in_rotation(client), what="replica back in rotation")
    figure = (
        f"commits applied 2 s late: out of rotation after {out_after:.2f} s of writes ({state['why_out']!r}, "
        f"lag {state['lag_seconds']} s); back {back_after:.2f} s after the delay was lifted"
    )
    assert "behind" in state["why_out"], figure
    # Out of rotation means more than 0.5 s behind; /health/ready rounds to the millisecond (0.5004 → 0.5).
    assert state["lag_seconds"] >= 0.5, figure
    print(figure)


async def test_reads_keep_answering_when_the_replica_stops(pair: Pair, tmp_path: Path) -> None:
    settings = _settings(tmp_path, pair.primary.url, pair.standby.url)
    with TestClient(create_app(settings)) as client:
        _until(lambda: _in_rotation(client), what="replica in rotation")
        created = _create(client)
        token, uid = created.headers[HEADER], created.json()["id"]
        _until(lambda: client.get(f"/api/v1/users/{uid}").status_code == 200, what="replica to replay")
        try:
            pair.standby.stop("fast")  # its connections end (57P01), then it refuses new ones
            statuses = [
                client.get(f"/api/v1/users/{uid}", headers={HEADER: token}).status_code for _ in range(5)
            ]
            statuses += [client.get(f"/api/v1/users/{uid}").status_code for _ in range(45)]
            why = _replica(client)["why_out"]
        finally:
            pair.standby.start()
        back_after = _until(lambda: _in_rotation(client), what="replica back in rotation")
    figure = (
        f"standby stopped: 50 reads answered {sorted(set(statuses))}; out because {why!r}; "
        f"back in rotation {back_after:.2f} s after its restart"
    )
    assert statuses == [200] * 50, figure
    assert why is not None, figure
    print(figure)


async def test_a_write_refused_as_read_only_is_503_and_heals(pair: Pair, tmp_path: Path) -> None:
    """25006 on the pool's open connections (a demoted primary): 503 with Retry-After, never a 500."""
    settings = _settings(tmp_path, pair.primary.url, pair.standby.url)
    async with load.admin(pair.primary.url) as primary:
        with TestClient(create_app(settings)) as client:
            assert _create(client).status_code == 201
            try:
                await primary.run("replicas.read_only_on")
                await primary.run("replicas.reload")
                _until(lambda: _create(client).status_code != 201, what="writes refused")
                refused = _create(client)
            finally:
                await primary.run("replicas.read_only_off")
                await primary.run("replicas.reload")
            healed_after = _until(lambda: _create(client).status_code == 201, what="writes accepted again")
    assert refused.status_code == 503, refused.text
    assert refused.json()["type"].endswith("database-unavailable")
    assert refused.headers["retry-after"]
    print(f"read-only primary: writes 503 database-unavailable; writable again after {healed_after:.2f} s")


async def test_failover_reads_answer_writes_503_then_recover(tmp_path: Path) -> None:
    failing = await asyncio.to_thread(_pair)
    try:
        hosts = f"127.0.0.1:{failing.primary.port},127.0.0.1:{failing.standby.port}"
        multi_host = f"postgresql://postgres@{hosts}/postgres?target_session_attrs=read-write"
        settings = _settings(tmp_path, multi_host, failing.standby.url)
        with TestClient(create_app(settings)) as client:
            _until(lambda: _in_rotation(client), what="replica in rotation")
            uid = _create(client).json()["id"]
            _until(lambda: client.get(f"/api/v1/users/{uid}").status_code == 200, what="replica to replay")

            failing.primary.stop("fast")
            reads = [client.get(f"/api/v1/users/{uid}").status_code for _ in range(20)]
            refused = _create(client)

            failing.standby.promote()
            promoted = time.monotonic()
            writes_after = _until(
                lambda: _create(client).status_code == 201, what="writes on the new primary"
            )
            reads += [client.get(f"/api/v1/users/{uid}").status_code for _ in range(20)]
            out_after = _until(lambda: not _in_rotation(client), what="the promoted standby out of rotation")
            why = _replica(client)["why_out"]
            total = time.monotonic() - promoted
    finally:
        failing.remove()
    figure = (
        f"primary stopped: reads {sorted(set(reads))}, a write {refused.status_code} "
        f"(Retry-After {refused.headers.get('retry-after')}); after promotion writes 201 within "
        f"{writes_after:.2f} s; the promoted standby out of rotation after {out_after:.2f} s more "
        f"({total:.2f} s in all, 20 reads included): {why!r}"
    )
    assert reads == [200] * 40, figure
    assert refused.status_code == 503, figure
    assert refused.headers.get("retry-after"), figure
    assert refused.json()["type"].endswith("database-unavailable"), figure
    assert why is not None, figure
    assert "promoted" in why, figure
    print(figure)
