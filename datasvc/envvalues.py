"""The kinds of value an environment variable holds: each parser takes the text, returns the value.

A parser raises `ValueError` with the reason alone ("must be >= 1"); `datasvc.settings` prefixes the
variable's name (and never repeats a secret's text). The same parsers serve command-line options that
mirror a setting (`datasvc serve --port`).
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

# Every duration setting is at most a day: far past any sensible timeout, and well inside what the server
# (`statement_timeout` in milliseconds, a 32-bit int) and asyncio's timers accept; `inf` is refused.
MAX_SECONDS = 86_400.0
SCHEMES = ("postgresql", "postgres")
# The cursor secret's least length, the HMAC-SHA256 block's worth of key (`datasvc.pagination`).
MIN_SECRET_BYTES = 32


def _seconds(raw: str, *, zero: bool) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ValueError(f"must be a finite number of seconds, at most {MAX_SECONDS:g} (one day)")
    if zero and not value >= 0:
        raise ValueError("must be >= 0")
    if not zero and not value > 0:
        raise ValueError("must be > 0")
    return value


def positive_seconds(raw: str) -> float:
    """Seconds, more than zero, at most a day."""
    return _seconds(raw, zero=False)


def non_negative_seconds(raw: str) -> float:
    """Seconds, zero or more, at most a day."""
    return _seconds(raw, zero=True)


def _whole(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError("must be a whole number") from None


def positive_int(raw: str) -> int:
    """A whole number, 1 or more."""
    value = _whole(raw)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def non_negative_int(raw: str) -> int:
    """A whole number, 0 or more."""
    value = _whole(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def port(raw: str) -> int:
    """A TCP port, 1-65535 (the parser of ``DATASVC_PORT`` and of ``datasvc serve --port``)."""
    value = _whole(raw)
    if not 1 <= value <= 65535:
        raise ValueError("must be a port number, 1-65535")
    return value


def url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as a libpq URL (scheme, host list, ports), or None; never quotes it."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return "must be a URL like postgresql://user:password@host:5432/dbname"
    if scheme not in SCHEMES:
        named = f" {scheme!r}" if scheme.isalnum() and len(scheme) < 20 else ""
        return f"scheme{named} is not supported: use postgresql://"
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    for entry in hosts.split(",") if hosts else []:
        if entry.startswith("["):  # [IPv6]:port
            host, _, tail = entry[1:].partition("]")
            if tail and not tail.startswith(":"):
                return "has a malformed [IPv6] host"
            number = tail[1:]
        else:
            host, _, number = entry.partition(":")
        if not host and number:
            return "has a port but no host"
        if number and not (number.isdigit() and 1 <= int(number) <= 65535):
            return "port must be a number, 1-65535"
    return None


def database_url(raw: str) -> str:
    """One libpq URL (see `url_problem`), surrounding blanks dropped."""
    problem = url_problem(raw.strip())
    if problem:
        raise ValueError(problem)
    return raw.strip()


def url_list(raw: str) -> str:
    """libpq URLs separated by commas, each checked, joined again without the blanks around them."""
    urls = [u.strip() for u in raw.split(",")]
    for i, url in enumerate(urls, 1):
        problem = "is empty" if not url else url_problem(url)
        if problem:
            raise ValueError(f"entry {i} {problem} (postgresql:// URLs separated by commas)")
    return ",".join(urls)


def cursor_secret(raw: str) -> str:
    """A key of at least `MIN_SECRET_BYTES` bytes, as given."""
    if len(raw.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -base64 32`)")
    return raw


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(float):
    """Seconds, shown in the largest whole unit (``7d``, ``90m``) as the configuration table writes it."""

    def __str__(self) -> str:
        for unit, seconds in sorted(_DURATION_UNITS.items(), key=lambda item: -item[1]):
            if self % seconds == 0:
                return f"{int(self // seconds)}{unit}"
        return f"{float(self):g}s"


def duration(raw: str) -> Duration:
    """Seconds from ``45s``, ``30m``, ``12h``, ``7d`` or a plain number of seconds; more than zero."""
    text = raw.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError("must be a duration such as 7d, 12h, 30m, 45s or a number of seconds") from None
    if not value > 0:
        raise ValueError("must be more than zero")
    return Duration(value)


def log_level(raw: str) -> str:
    """debug, info, warning or error, in lower case."""
    if raw.lower() not in {"debug", "info", "warning", "error"}:
        raise ValueError("must be debug, info, warning or error")
    return raw.lower()


def boolean(raw: str) -> bool:
    """1/true/yes/on or 0/false/no/off, in any case."""
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def pool_mode(raw: str) -> str:
    """session or transaction, in lower case."""
    if raw.strip().lower() not in {"session", "transaction"}:
        raise ValueError("must be session or transaction")
    return raw.strip().lower()


def on_off(raw: str) -> str:
    """``on`` or ``off``, from any text `boolean` reads."""
    try:
        return "on" if boolean(raw) else "off"
    except ValueError:
        raise ValueError("must be on or off") from None


def http_url(raw: str) -> str:
    """An http:// or https:// URL with something after the scheme, as given."""
    if not raw.startswith(("http://", "https://")) or len(raw) <= len("https://"):
        raise ValueError("must be an http:// or https:// URL (OTLP over HTTP)")
    return raw


def traces_exporter(raw: str) -> str:
    """``otlp`` or ``none`` (OpenTelemetry's comma-separated list, with one name of the two)."""
    names = {n.strip().lower() for n in raw.split(",") if n.strip()}
    if not names <= {"otlp", "none"} or names == {"otlp", "none"}:
        raise ValueError("must be otlp or none (spans are sent as OTLP over HTTP)")
    return names.pop()
