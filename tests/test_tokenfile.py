"""Issue 14.3: revocation without a restart. DATASVC_AUTH_TOKENS_FILE is re-read when it changes."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import httpx2
import pytest

from datasvc.auth import Caller, hash_token
from datasvc.settings import Settings
from datasvc.tokenfile import still_listed
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.waits import until_blocking

TOKENS = {"alpha": "alpha-token-0123456789", "beta": "beta-token-0123456789"}
USER = "/api/v1/users/1"  # no such user: 404 means authenticated and authorized, 401 refused


def _line(*callers: str) -> str:
    return "".join(f"{name} users:read {hash_token(TOKENS[name])}\n" for name in callers)


def _replace(path: Path, data: str | bytes) -> None:
    """Write ``data`` to a new file and rename it over ``path``, as docs/api.md tells operators to.

    Written in place, the file is truncated first, and a check between the truncation and the write reads
    an empty file: every caller refused until the next check (CI saw a fix applied as that empty set).
    """
    new = path.with_name(path.name + ".new")
    if isinstance(data, bytes):
        new.write_bytes(data)
    else:
        new.write_text(data)
    new.replace(path)


def _status(base_url: str, caller: str) -> int:
    """One request on a fresh connection (with several workers, the kernel picks one each time)."""
    headers = {"Authorization": f"Bearer {TOKENS[caller]}", "Connection": "close"}
    return httpx2.get(base_url + USER, headers=headers, timeout=5).status_code


def _metric(base_url: str, name: str, labels: str = "") -> float | None:
    text = httpx2.get(base_url + "/metrics", timeout=5).text
    found = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


@pytest.mark.slow
def test_a_removed_token_is_refused_by_every_worker_once_they_reload(settings, tmp_path):
    tokens = tmp_path / "tokens"
    _replace(tokens, _line("alpha", "beta"))
    reload = 1.0
    settings = settings.with_overrides(auth_tokens_file=tokens, auth_reload_seconds=reload, workers=2)
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        until_blocking(
            lambda: all(_status(server.base_url, "beta") == 404 for _ in range(10)), what="both workers"
        )
        removed = time.monotonic()
        _replace(tokens, _line("alpha"))
        # Each worker checks every `reload` seconds, reading the file in a thread: how soon is a figure
        # (printed), not asserted; the deadline only bounds a worker that never reloads.
        until_blocking(lambda: _status(server.base_url, "beta") == 401, timeout=30, what="beta refused")
        first_refused = time.monotonic() - removed
        until_blocking(
            lambda: all(_status(server.base_url, "beta") == 401 for _ in range(10)),
            timeout=30,
            what="beta refused by both workers",
        )
        # 40 fresh connections: the chance that all reached one of two workers is 2**-39.
        after = [_status(server.base_url, "beta") for _ in range(40)]
        kept = [_status(server.base_url, "alpha") for _ in range(10)]
        # With several workers /metrics is the group's, plus the answering worker's own reload count.
        applied = _metric(server.base_url, "datasvc_auth_tokens_reloads_total", '{result="applied"}')
    assert set(after) == {401}, after
    assert set(kept) == {404}, kept
    assert applied == 1
    print(f"beta first refused {first_refused:.2f} s after its line was removed (reload {reload} s)")


@pytest.fixture
def watched(settings: Settings, tmp_path: Path):
    tokens = tmp_path / "tokens"
    _replace(tokens, _line("alpha"))
    with ThreadServer(settings.with_overrides(auth_tokens_file=tokens, auth_reload_seconds=0.05)) as server:
        yield server.base_url, tokens


def test_a_token_added_to_the_file_is_accepted_and_counted(watched):
    base_url, tokens = watched
    assert _status(base_url, "beta") == 401
    _replace(tokens, _line("alpha", "beta"))
    until_blocking(lambda: _status(base_url, "beta") == 404, what="beta accepted")
    assert _metric(base_url, "datasvc_auth_tokens_reloads_total", '{result="applied"}') == 1
    assert _metric(base_url, "datasvc_auth_tokens") == 2
    assert _metric(base_url, "datasvc_auth_tokens_reload_failing") == 0


@pytest.mark.parametrize(
    ("bad", "error", "alpha"),
    [
        (_line("alpha") + "beta users:read\n", "expected 'caller scopes sha256hex'", 404),
        ("beta users:read\n", "expected 'caller scopes sha256hex'", 401),
        (_line("beta") + "gamma users:write " + hash_token(TOKENS["beta"]) + "\n", "configured twice", 401),
        (b"\xff\xfe not utf-8", "DATASVC_AUTH_TOKENS_FILE=", 401),
        (None, "cannot stat it", 401),
    ],
    ids=["typo-alpha-still-listed", "alpha-removed-and-typo", "token-twice", "not-utf8", "deleted"],
)
def test_a_bad_file_accepts_only_the_tokens_it_still_lists_and_says_why(watched, caplog, bad, error, alpha):
    """Fail closed: a token the file no longer lists is refused whatever else is wrong with the file."""
    base_url, tokens = watched
    with caplog.at_level(logging.ERROR, logger="datasvc.auth"):
        if bad is None:
            tokens.unlink()
        else:
            _replace(tokens, bad)
        until_blocking(
            lambda: _metric(base_url, "datasvc_auth_tokens_reload_failing") == 1, what="the refusal"
        )
        assert _status(base_url, "alpha") == alpha
        assert _status(base_url, "beta") == 401  # never in a good set: a bad file grants nothing
        assert httpx2.get(base_url + USER).status_code == 401  # never open
        assert _metric(base_url, "datasvc_auth_tokens") == (1 if alpha == 404 else 0)
        text = httpx2.get(base_url + "/metrics").text
        assert re.search(r'^datasvc_auth_tokens_reloads_total\{result="refused"\} 1\.0$', text, re.M)
        last = re.search(
            r'^datasvc_auth_tokens_last_error_timestamp_seconds\{error="(.*)"\} (\S+)$', text, re.M
        )
        assert last is not None
        assert error in last.group(1)
        assert abs(float(last.group(2)) - time.time()) < 60
    logged = [r for r in caplog.records if r.name == "datasvc.auth" and r.levelno == logging.ERROR]
    assert len(logged) == 1  # once, not at every check
    assert error in logged[0].error
    assert logged[0].refused == ([] if alpha == 404 else ["alpha"])
    # Fixed, it is applied and the alarm clears.
    _replace(tokens, _line("beta"))
    until_blocking(lambda: _metric(base_url, "datasvc_auth_tokens_reload_failing") == 0, what="the fix")
    assert _status(base_url, "beta") == 404
    assert _status(base_url, "alpha") == 401


def test_back_to_the_last_good_file_after_a_bad_edit_restores_every_token(watched):
    base_url, tokens = watched
    good = tokens.read_text()
    _replace(tokens, "garbage\n")
    until_blocking(lambda: _status(base_url, "alpha") == 401, what="alpha refused")
    _replace(tokens, good)
    until_blocking(lambda: _status(base_url, "alpha") == 404, what="alpha accepted again")
    assert _metric(base_url, "datasvc_auth_tokens_reload_failing") == 0


def test_a_line_that_breaks_keeps_no_more_scopes_than_both_versions_give():
    alpha = hash_token(TOKENS["alpha"])
    served = [(alpha, Caller("alpha", frozenset({"users:read", "users:write"})))]
    assert still_listed(served, f"alpha users:read,users:wirte {alpha}\nbroken line\n") == [
        (alpha, Caller("alpha", frozenset({"users:read"})))
    ]
    assert still_listed(served, f"alpha users:raed {alpha}\n") == []  # no scope left: refused
    assert still_listed(served, f"{alpha}\n") == []  # a bare hash names no scope
    assert still_listed(served, f"alpha users:read {alpha}\nalpha users:write {alpha}\n") == []
    assert still_listed(served, "") == []


def test_an_emptied_file_refuses_everyone_and_never_opens(watched):
    base_url, tokens = watched
    _replace(tokens, "# every token revoked\n")
    until_blocking(lambda: _status(base_url, "alpha") == 401, what="alpha refused")
    assert httpx2.get(base_url + USER).status_code == 401  # not open mode
    assert _metric(base_url, "datasvc_auth_tokens") == 0


def test_an_empty_tokens_file_at_start_means_tokens_are_required(settings, tmp_path):
    tokens = tmp_path / "tokens"
    _replace(tokens, "")
    with ThreadServer(settings.with_overrides(auth_tokens_file=tokens, auth_reload_seconds=0.05)) as server:
        assert httpx2.get(server.base_url + USER).status_code == 401
        _replace(tokens, _line("alpha"))
        until_blocking(lambda: _status(server.base_url, "alpha") == 404, what="alpha accepted")
