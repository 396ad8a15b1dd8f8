-- Test-only statements of tests/test_replicas.py, run on the throwaway primary or its hot standby.

-- name: create_statement_stats :exec
-- pg_stat_statements, to count on each server the statements the service ran there (by their tag).
-- expect-plan: Utility statement
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- name: calls :value
-- How often this server ran statements whose text starts with the pattern (a registry tag).
-- params: pattern
-- expect-plan: Function Scan on pg_stat_statements
SELECT coalesce(sum(calls), 0)::bigint
FROM pg_stat_statements
WHERE query LIKE $1;

-- name: server :one
-- Which server this is: a standby or not, and its port.
-- expect-plan: Result (no table access)
SELECT pg_is_in_recovery() AS in_recovery, inet_server_port() AS port;

-- name: pause :exec
-- Pause WAL replay on a standby.
-- expect-plan: Result (no table access)
SELECT pg_wal_replay_pause();

-- name: resume :exec
-- Resume WAL replay on a standby.
-- expect-plan: Result (no table access)
SELECT pg_wal_replay_resume();

-- name: read_only_on :exec
-- Make the server refuse writes (25006) in every session from the next reload on: what a service sees
-- of a primary that was demoted under its open connections.
-- expect-plan: Utility statement
ALTER SYSTEM SET default_transaction_read_only = on;

-- name: read_only_off :exec
-- Undo read_only_on (from the next reload on).
-- expect-plan: Utility statement
ALTER SYSTEM RESET default_transaction_read_only;

-- name: reload :value
-- Make every backend re-read the configuration.
-- expect-plan: Result (no table access)
SELECT pg_reload_conf();

-- name: apply_delay_on :exec
-- Make a standby apply each commit 2 s after the primary wrote it (from the next reload on): a replica
-- that falls behind while still answering, as under a replay backlog.
-- expect-plan: Utility statement
ALTER SYSTEM SET recovery_min_apply_delay = '2s';

-- name: apply_delay_off :exec
-- Undo apply_delay_on (from the next reload on).
-- expect-plan: Utility statement
ALTER SYSTEM RESET recovery_min_apply_delay;

-- name: replayed :value
-- How far a standby has replayed the WAL, as bytes since 0/0 (a consistency token's unit).
-- expect-plan: Result (no table access)
SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint;
