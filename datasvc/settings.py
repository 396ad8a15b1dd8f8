"""Every setting the service reads, from the environment, once, typed.

Each setting is declared once, as a field of `Settings` annotated with its `Env` (variable name, parser
of its text from `datasvc.envvalues`, one line of documentation); `FIELDS` is derived from those
declarations. tests/test_settings.py checks the README's configuration table against them; `datasvc
serve` logs the effective values at start-up with secrets redacted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, get_type_hints

from datasvc import envvalues

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The default DATASVC_CALLER_MAX_IN_FLIGHT is DATASVC_MAX_IN_FLIGHT divided by this.
CALLER_SHARE = 4


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use (one problem a line)."""


SECRET_VARIABLES = frozenset(
    {"DATABASE_URL", "DATASVC_REPLICA_URLS", "DATASVC_CURSOR_SECRET", "DATASVC_AUTH_TOKENS"}
)


@dataclass(frozen=True)
class Env:
    """How a `Settings` field is read: its environment variable, the parser of its text, and its doc."""

    name: str
    parse: Callable[[str], Any]
    doc: str


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The service's configuration; build it with `Settings.from_env`."""

    database_url: Annotated[
        str | None,
        Env(
            "DATABASE_URL",
            envvalues.database_url,
            "libpq URL of the database. Unset: `datasvc serve` starts a private PostgreSQL.",
        ),
    ] = None
    pool_min_size: Annotated[
        int, Env("DATASVC_POOL_MIN", envvalues.non_negative_int, "Connections the pool keeps open.")
    ] = 2
    pool_max_size: Annotated[
        int, Env("DATASVC_POOL_MAX", envvalues.positive_int, "Most connections the pool opens.")
    ] = 10
    pool_mode: Annotated[
        str,
        Env(
            "DATASVC_POOL_MODE",
            envvalues.pool_mode,
            "`session`: the timeouts are sent at connect. `transaction` (behind a transaction pooler such "
            "as PgBouncer): no session state; only `application_name` at connect, the timeouts and "
            "`plan_cache_mode` from the database role, checked at start-up.",
        ),
    ] = "session"
    statement_cache_size: Annotated[
        int,
        Env(
            "DATASVC_STATEMENT_CACHE_SIZE",
            envvalues.non_negative_int,
            "Prepared statements asyncpg keeps per connection. 0 behind a pooler without prepared-statement "
            "support (PgBouncer < 1.21).",
        ),
    ] = 100
    acquire_timeout: Annotated[
        float,
        Env(
            "DATASVC_ACQUIRE_TIMEOUT",
            envvalues.positive_seconds,
            "Seconds a request waits for a pooled connection before 503.",
        ),
    ] = 2.0
    connect_timeout: Annotated[
        float,
        Env(
            "DATASVC_CONNECT_TIMEOUT", envvalues.positive_seconds, "Seconds to open one database connection."
        ),
    ] = 5.0
    start_timeout: Annotated[
        float,
        Env(
            "DATASVC_START_TIMEOUT",
            envvalues.positive_seconds,
            "With `DATASVC_POOL_MODE=transaction`: seconds `datasvc serve` waits at start-up for the "
            "database to answer its checks, then exits 1 (SIGINT/SIGTERM stop the wait at once).",
        ),
    ] = 60.0
    statement_timeout: Annotated[
        float,
        Env(
            "DATASVC_STATEMENT_TIMEOUT",
            envvalues.positive_seconds,
            "Seconds a statement may run (server `statement_timeout`); then 504.",
        ),
    ] = 5.0
    lock_timeout: Annotated[
        float,
        Env(
            "DATASVC_LOCK_TIMEOUT",
            envvalues.positive_seconds,
            "Seconds a statement may wait for a row or table lock (server `lock_timeout`).",
        ),
    ] = 2.0
    transaction_retries: Annotated[
        int,
        Env(
            "DATASVC_TRANSACTION_RETRIES",
            envvalues.non_negative_int,
            "Retries of a transaction PostgreSQL rolled back (serialization failure, deadlock); then 503.",
        ),
    ] = 3
    replica_urls: Annotated[
        str,
        Env(
            "DATASVC_REPLICA_URLS",
            envvalues.url_list,
            "libpq URLs of hot standbys, separated by commas: statements declared `-- route: replica` run "
            "there while they keep up. Unset: every statement runs on `DATABASE_URL`.",
        ),
    ] = ""
    replica_max_lag: Annotated[
        float,
        Env(
            "DATASVC_REPLICA_MAX_LAG",
            envvalues.positive_seconds,
            "Seconds a replica may be behind the primary (by WAL position) and still take reads.",
        ),
    ] = 1.0
    max_in_flight: Annotated[
        int,
        Env(
            "DATASVC_MAX_IN_FLIGHT",
            envvalues.non_negative_int,
            "Requests served at once per worker; more are shed at once as 503 with `Retry-After`. 0: no "
            "limit.",
        ),
    ] = 100
    application_name: Annotated[
        str,
        Env(
            "DATASVC_APPLICATION_NAME",
            str,
            "`application_name` of every connection, as seen in `pg_stat_activity`.",
        ),
    ] = "datasvc"
    max_body_bytes: Annotated[
        int,
        Env(
            "DATASVC_MAX_BODY_BYTES", envvalues.positive_int, "Largest request body accepted; larger is 413."
        ),
    ] = 65536
    max_header_bytes: Annotated[
        int,
        Env(
            "DATASVC_MAX_HEADER_BYTES",
            envvalues.positive_int,
            "Largest request line plus headers accepted; larger is 431 and the connection is closed.",
        ),
    ] = 16384
    head_timeout: Annotated[
        float,
        Env(
            "DATASVC_HEAD_TIMEOUT",
            envvalues.positive_seconds,
            "Seconds a request line plus headers may take to arrive, from the connection or its first byte; "
            "then the connection is closed.",
        ),
    ] = 10.0
    body_timeout: Annotated[
        float,
        Env(
            "DATASVC_BODY_TIMEOUT",
            envvalues.positive_seconds,
            "Seconds a whole request body may take to arrive after its head; then 408 and the connection "
            "is closed. The body is read before the request takes a slot of `DATASVC_MAX_IN_FLIGHT`.",
        ),
    ] = 10.0
    send_timeout: Annotated[
        float,
        Env(
            "DATASVC_SEND_TIMEOUT",
            envvalues.positive_seconds,
            "Seconds an answer may wait for the client to read it (the send buffer full); then the "
            "connection is closed.",
        ),
    ] = 30.0
    max_connections: Annotated[
        int,
        Env(
            "DATASVC_MAX_CONNECTIONS",
            envvalues.non_negative_int,
            "Open client connections per worker; past it a new connection is answered 503 and closed at "
            "once. 0: no limit (the descriptor limit is then the bound).",
        ),
    ] = 4096
    host: Annotated[str, Env("DATASVC_HOST", str, "Address `datasvc serve` binds.")] = "127.0.0.1"
    port: Annotated[int, Env("DATASVC_PORT", envvalues.port, "Port `datasvc serve` binds.")] = 8000
    workers: Annotated[
        int, Env("DATASVC_WORKERS", envvalues.positive_int, "Worker processes of `datasvc serve`.")
    ] = 1
    shutdown_timeout: Annotated[
        float,
        Env(
            "DATASVC_SHUTDOWN_TIMEOUT",
            envvalues.positive_seconds,
            "Seconds in-flight requests get to finish on SIGTERM; also bounds closing the pool.",
        ),
    ] = 10.0
    drain_seconds: Annotated[
        float,
        Env(
            "DATASVC_DRAIN_SECONDS",
            envvalues.non_negative_seconds,
            "Seconds `datasvc serve` keeps serving after SIGTERM, answering readiness 503 and each request "
            "with `Connection: close`, so a balancer drains it; then in-flight requests finish. 0: none.",
        ),
    ] = 5.0
    sql_dir: Annotated[Path, Env("DATASVC_SQL_DIR", Path, "Folder of the `.sql` statement files.")] = (
        PROJECT_ROOT / "sql"
    )
    migrations_dir: Annotated[Path, Env("DATASVC_MIGRATIONS_DIR", Path, "Folder of the yoyo migrations.")] = (
        PROJECT_ROOT / "migrations"
    )
    data_dir: Annotated[
        Path,
        Env(
            "DATASVC_DATA_DIR",
            Path,
            "Where the embedded PostgreSQL keeps its data when `DATABASE_URL` is unset.",
        ),
    ] = PROJECT_ROOT / ".datasvc"
    embedded_port: Annotated[
        int,
        Env(
            "DATASVC_EMBEDDED_PORT",
            envvalues.port,
            "Port (127.0.0.1) of the embedded PostgreSQL when `DATABASE_URL` is unset.",
        ),
    ] = 54329
    log_level: Annotated[
        str, Env("DATASVC_LOG_LEVEL", envvalues.log_level, "debug, info, warning or error.")
    ] = "info"
    access_log: Annotated[
        bool, Env("DATASVC_ACCESS_LOG", envvalues.boolean, "One JSON line per request on stdout.")
    ] = True
    access_log_flush: Annotated[
        float,
        Env(
            "DATASVC_ACCESS_LOG_FLUSH",
            envvalues.positive_seconds,
            "Seconds an access-log line may wait to be written with others (one write per batch).",
        ),
    ] = 0.05
    auth: Annotated[
        str,
        Env(
            "DATASVC_AUTH",
            envvalues.on_off,
            "`off`: serve every caller without a token, on any address, with a warning at start-up (no "
            "token may be configured then). `on`: tokens as configured; with none, `datasvc serve` runs "
            "open on loopback only and refuses to start on any other address.",
        ),
    ] = "on"
    auth_tokens: Annotated[
        str,
        Env(
            "DATASVC_AUTH_TOKENS",
            str,
            "Bearer tokens as `caller scopes sha256hex` entries separated by `;` (see Authentication). "
            "Unset with no file: open mode, on loopback only unless `DATASVC_AUTH=off`.",
        ),
    ] = ""
    auth_tokens_file: Annotated[
        Path | None,
        Env(
            "DATASVC_AUTH_TOKENS_FILE",
            Path,
            "File of `caller scopes sha256hex` lines, added to `DATASVC_AUTH_TOKENS`; re-read when it "
            "changes; a token it no longer lists is refused, even when it does not parse. Set, even empty: "
            "tokens required.",
        ),
    ] = None
    auth_reload_seconds: Annotated[
        float,
        Env(
            "DATASVC_AUTH_RELOAD_SECONDS",
            envvalues.positive_seconds,
            "How often each worker checks `DATASVC_AUTH_TOKENS_FILE` for a change: a token removed from it "
            "is refused within this time.",
        ),
    ] = 5.0
    caller_max_in_flight: Annotated[
        int | None,
        Env(
            "DATASVC_CALLER_MAX_IN_FLIGHT",
            envvalues.non_negative_int,
            "Requests one authenticated caller may have in flight per worker; more are 429 with "
            "`Retry-After`. Unset: a quarter of `DATASVC_MAX_IN_FLIGHT` (see Authentication). 0: no limit.",
        ),
    ] = None
    list_max_offset: Annotated[
        int,
        Env(
            "DATASVC_LIST_MAX_OFFSET",
            envvalues.non_negative_int,
            "Largest `offset` GET /api/v1/users accepts (larger is 422); deeper pages use the cursors.",
        ),
    ] = 100_000
    changes_retention: Annotated[
        float,
        Env(
            "DATASVC_CHANGES_RETENTION",
            envvalues.duration,
            "How long the audit trail (users_changes) keeps a change: `7d`, `12h`, `30m`, `45s` or seconds. "
            "Older changes are purged in batches; a feed cursor behind them is 410 cursor-expired.",
        ),
    ] = envvalues.Duration(7 * 86400)
    cursor_secret: Annotated[
        str | None,
        Env(
            "DATASVC_CURSOR_SECRET",
            envvalues.cursor_secret,
            "HMAC key (32+ bytes) signing listing cursors. Unset: random per `datasvc serve` run, shared "
            "by its workers; set it when several instances serve one API.",
        ),
    ] = None
    idempotency_ttl: Annotated[
        float,
        Env(
            "DATASVC_IDEMPOTENCY_TTL",
            envvalues.positive_seconds,
            "Seconds an `Idempotency-Key` and its recorded answer are kept (then purged in batches).",
        ),
    ] = 86400.0
    # OpenTelemetry's own variables (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/):
    # setting any of the first three turns tracing on (datasvc.tracing); the SDK reads the rest itself.
    otel_exporter_otlp_endpoint: Annotated[
        str | None,
        Env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            envvalues.http_url,
            "OTLP/HTTP collector base URL (`/v1/traces` is appended). Set: tracing on (see Tracing).",
        ),
    ] = None
    otel_exporter_otlp_traces_endpoint: Annotated[
        str | None,
        Env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            envvalues.http_url,
            "OTLP/HTTP URL spans are posted to, as is. Set: tracing on.",
        ),
    ] = None
    otel_traces_exporter: Annotated[
        str | None,
        Env(
            "OTEL_TRACES_EXPORTER",
            envvalues.traces_exporter,
            "`otlp`: tracing on (to http://localhost:4318 unless an endpoint is set); `none`: off.",
        ),
    ] = None
    otel_service_name: Annotated[
        str | None,
        Env(
            "OTEL_SERVICE_NAME",
            str,
            "`service.name` of the spans. Unset: `service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else datasvc.",
        ),
    ] = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``DATASVC_*`` variable (and ``DATABASE_URL``); unknown values fail loudly."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in FIELDS:
            raw = env.get(spec.env)
            if raw is None or raw == "":
                continue
            try:
                values[spec.attr] = spec.parse(raw)
            except ValueError as exc:
                # A secret's value is never repeated (a URL's password, the cursor key, token hashes).
                shown = "" if spec.env in SECRET_VARIABLES else f"={raw[:40]!r}"
                problems.append(f"{spec.env}{shown}: {exc}")
        settings = cls(**{k: v for k, v in values.items() if k not in ("pool_min_size", "pool_max_size")})
        low = values.get("pool_min_size", settings.pool_min_size)
        high = values.get("pool_max_size", settings.pool_max_size)
        if low > high and not any(p.startswith(("DATASVC_POOL_MIN", "DATASVC_POOL_MAX")) for p in problems):
            problems.append(
                f"DATASVC_POOL_MIN={low} is more than DATASVC_POOL_MAX={high}: the pool cannot keep more "
                "connections open than it may open"
            )
        if settings.tracing:
            problems += _batch_processor_problems(env)
        if problems:
            # Every problem at once, one a line: an operator fixes them in one go.
            raise SettingsError("\n".join(problems))
        return replace(settings, pool_min_size=low, pool_max_size=high)

    @property
    def tracing(self) -> bool:
        """Whether spans are made and exported: an OTLP endpoint or ``OTEL_TRACES_EXPORTER=otlp`` is set."""
        if self.otel_traces_exporter is not None:
            return self.otel_traces_exporter == "otlp"
        return bool(self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    @property
    def replicas(self) -> tuple[str, ...]:
        """The replica URLs of `DATASVC_REPLICA_URLS`, in order (empty: none)."""
        return tuple(u for u in self.replica_urls.split(",") if u)

    @property
    def caller_limit(self) -> int:
        """Requests one authenticated caller may have in flight per worker (0: no per-caller bound)."""
        if self.caller_max_in_flight is not None:
            return self.caller_max_in_flight
        # A quarter: four callers at full tilt fill the worker, one caller in a loop leaves three quarters
        # to the others, and a caller alone still reaches full speed (25 by default, past the pool's 10
        # connections, where a worker's throughput stops growing; measured in docs/security.md).
        return max(1, self.max_in_flight // CALLER_SHARE) if self.max_in_flight else 0

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration, safe to log: passwords, the cursor secret and token hashes masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url" and value:
                value = redact_url(value)
            elif f.name == "replica_urls" and value:
                value = ",".join(redact_url(u) for u in value.split(","))
            elif f.name == "cursor_secret" and value:
                value = "***"
            elif f.name == "auth_tokens" and value:
                # Hashes of tokens, not tokens; still nothing a log reader needs beyond their number.
                value = (
                    f"*** ({len([e for e in value.replace(';', chr(10)).splitlines() if e.strip()])} entries)"
                )
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


# The SDK's batch-processor variables and its defaults. The SDK reads them itself, in every worker, and
# refuses a bad combination with a traceback there; checked here, it is a line at start-up instead.
_BATCH_PROCESSOR = {
    "OTEL_BSP_MAX_QUEUE_SIZE": 2048,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": 512,
    "OTEL_BSP_SCHEDULE_DELAY": 5000,
    "OTEL_BSP_EXPORT_TIMEOUT": 30000,
}


def _batch_processor_problems(env: Mapping[str, str]) -> list[str]:
    values: dict[str, int] = {}
    problems = []
    for name, default in _BATCH_PROCESSOR.items():
        raw = env.get(name) or str(default)
        values[name] = int(raw) if raw.strip().isdigit() else 0
        if values[name] <= 0:
            problems.append(f"{name}={raw[:40]!r}: must be a whole number above 0")
    batch, queue = values["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"], values["OTEL_BSP_MAX_QUEUE_SIZE"]
    if not problems and batch > queue:
        problems.append(
            f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch} is more than OTEL_BSP_MAX_QUEUE_SIZE={queue}: "
            "a batch is taken from the queue"
        )
    return problems


def redact_url(url: str) -> str:
    """Mask the password of a libpq URL (``postgresql://user:secret@host`` → ``user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{hostpart}"


@dataclass(frozen=True)
class FieldSpec:
    """One setting as declared on `Settings`: the field, its variable, parser and documentation."""

    attr: str
    env: str
    parse: Callable[[str], Any]
    doc: str
    default: Any


def _specs() -> tuple[FieldSpec, ...]:
    hints = get_type_hints(Settings, include_extras=True)
    out = []
    for f in fields(Settings):
        env = next(m for m in hints[f.name].__metadata__ if isinstance(m, Env))
        out.append(FieldSpec(f.name, env.name, env.parse, env.doc, f.default))
    return tuple(out)


FIELDS: tuple[FieldSpec, ...] = _specs()
