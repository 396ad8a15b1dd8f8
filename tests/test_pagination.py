import base64

import orjson
import pytest

from datasvc.pagination import Cursor, CursorCodec, InvalidCursor, binding_digest

SECRET = b"k" * 32
BINDING = binding_digest(["created_at", "desc", None, None, None, None])


def _codec(secret: bytes = SECRET) -> CursorCodec:
    return CursorCodec(secret)


def test_a_cursor_round_trips():
    token = _codec().encode(Cursor("prev", ["2024-01-01T00:00:00+00:00", 42]), BINDING)
    assert _codec().decode(token, BINDING) == Cursor("prev", ["2024-01-01T00:00:00+00:00", 42])


def test_a_cursor_is_url_safe_and_opaque():
    token = _codec().encode(Cursor("next", ["alice", 1]), BINDING)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _reforge(token: str, **changes: object) -> str:
    """The same token with its payload edited but the old signature kept."""
    version, payload, mac = token.split(".")
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    edited = base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()
    return f"{version}.{edited}.{mac}"


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param("1.a.b", id="bad-signature"),
        pytest.param("2.e30.AAAA", id="unknown-version"),
        pytest.param("1.!!!.???", id="not-base64"),
        pytest.param("1." + "A" * 2000 + ".x", id="too-long"),
        pytest.param("1.é.x", id="not-ascii"),
    ],
)
def test_garbled_cursors_are_invalid(token):
    with pytest.raises(InvalidCursor, match="not a cursor this service issued"):
        _codec().decode(token, BINDING)


def test_an_edited_position_fails_the_signature():
    token = _codec().encode(Cursor("next", ["alice", 1]), BINDING)
    with pytest.raises(InvalidCursor, match="bad signature"):
        _codec().decode(_reforge(token, k=["zed", 999]), BINDING)


def test_a_cursor_signed_with_another_secret_is_invalid():
    """What a cursor from before a restart looks like: the 422 names the setting that keeps cursors valid."""
    token = _codec(b"x" * 32).encode(Cursor("next", ["alice", 1]), BINDING)
    with pytest.raises(InvalidCursor, match=r"signed with DATASVC_CURSOR_SECRET.*a restart invalidates"):
        _codec().decode(token, BINDING)


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(["username", "desc", None, None, None, None], id="sort_by"),
        pytest.param(["created_at", "asc", None, None, None, None], id="sort_order"),
        pytest.param(["created_at", "desc", "active", None, None, None], id="status"),
        pytest.param(["created_at", "desc", None, False, None, None], id="is_verified"),
        pytest.param(["created_at", "desc", None, None, True, None], id="is_admin"),
        pytest.param(["created_at", "desc", None, None, None, "al"], id="search"),
    ],
)
def test_a_cursor_is_bound_to_its_sort_and_filters(other):
    token = _codec().encode(Cursor("next", ["2024-01-01T00:00:00+00:00", 1]), BINDING)
    with pytest.raises(InvalidCursor, match="different sort_by, sort_order or filters"):
        _codec().decode(token, binding_digest(other))


def test_the_error_names_the_cursor_parameter():
    with pytest.raises(InvalidCursor) as caught:
        _codec().decode("nope", BINDING)
    assert [e.field for e in caught.value.errors] == ["query.cursor"]
    assert caught.value.status == 422


def test_a_short_secret_is_refused():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        CursorCodec(b"s" * 31)


def test_the_cursor_secret_is_never_logged_and_must_be_long():
    from datasvc.settings import Settings, SettingsError

    assert Settings(cursor_secret="s" * 40).redacted()["cursor_secret"] == "***"
    with pytest.raises(SettingsError, match="DATASVC_CURSOR_SECRET"):
        Settings.from_env({"DATASVC_CURSOR_SECRET": "s" * 31})
    assert Settings.from_env({"DATASVC_CURSOR_SECRET": "x" * 32}).cursor_secret == "x" * 32
