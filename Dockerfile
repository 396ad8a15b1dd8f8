# datasvc: a slim, non-root image. Serve with the default command; migrate with `docker run IMAGE migrate`
# (compose.yaml runs it once before the service starts). Build: docker build -t datasvc .
# It binds 0.0.0.0, so `serve` refuses to start without bearer tokens: pass DATASVC_AUTH_TOKENS (hashes
# from `datasvc token new`) or mount a file and set DATASVC_AUTH_TOKENS_FILE (re-read when it changes);
# only DATASVC_AUTH=off runs it open, on purpose. Connect as the runtime role datasvc_app, not the owner:
#   docker run -e DATABASE_URL=postgresql://datasvc_app:...@db/datasvc -e DATASVC_AUTH_TOKENS=... datasvc
# It needs DATABASE_URL: the embedded PostgreSQL (the `embedded` extra) is not installed here.
# Stopping: SIGTERM drains for DATASVC_DRAIN_SECONDS (5), then in-flight requests get
# DATASVC_SHUTDOWN_TIMEOUT (10): give it a stop grace period of at least 20 s (`docker stop -t 20`,
# compose's stop_grace_period, Kubernetes' terminationGracePeriodSeconds), more if you raise either.
# The health check follows DATASVC_PORT.

# Build stage: install datasvc and its dependencies into a virtualenv; every dependency ships a
# manylinux wheel (asyncpg, orjson, uvloop, httptools, psycopg-binary), so no compiler is needed.
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY datasvc ./datasvc
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-compile ".[tracing]"

# Runtime stage: the virtualenv, the SQL statements and the migrations; nothing else.
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 datasvc \
    && useradd --system --uid 10001 --gid datasvc --no-create-home --shell /usr/sbin/nologin datasvc
COPY --from=build /opt/venv /opt/venv
COPY sql /app/sql
COPY migrations /app/migrations
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATASVC_SQL_DIR=/app/sql \
    DATASVC_MIGRATIONS_DIR=/app/migrations \
    DATASVC_HOST=0.0.0.0 \
    DATASVC_PORT=8000
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Liveness only (no database call); orchestrators should gate traffic on /health/ready (compose.yaml does).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('DATASVC_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["datasvc"]
CMD ["serve"]
