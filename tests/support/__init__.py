"""What the tests share: the real parts they start and the tools they drive them with. No tests here.

- `servers`: the one way to start the service on a socket, `ThreadServer(settings)` (uvicorn in a thread
  of the test's process) or `ProcessServer(settings, log)` (``python -m datasvc serve``: signals, exit).
- `pgserver`: the test PostgreSQL server (``DATASVC_TEST_DATABASE_URL``), its databases and roles.
- `cluster`: throwaway PostgreSQL clusters of a test's own (crash, stop, standby, promote).
- `faultproxy`: a TCP proxy in front of PostgreSQL that closes, resets or stalls on demand.
- `pgbouncer`, `haproxy`: a real PgBouncer (1.24, 1.18) and a real HAProxy, started by a test.
- `load`: a steady HTTP load recording every answer, a light raw-socket flood (`hammer`), an admin
  connection running ``tests/sql/``; `flood`: `hammer` in a process of its own.
- `waits`: wait on a condition with a deadline, never for a length of time.
- `otlp`: a real OTLP/HTTP trace receiver, and a collector that never answers.
- `api`: a user to create, its fields, the problem+json check.
- `rawhttp`: bytes no HTTP client would send; `access`: the access log's lines; `browser`: headless
  Chromium over CDP; `seed`: rows put in before a test; `values`: constants many tests use.
- `statement_worker`, `schemathesis_hooks`: run by other processes (``python -m``, schemathesis).
"""
