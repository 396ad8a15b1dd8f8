-- name: primary_lsn :value
-- The primary's WAL position now, as bytes since 0/0: sampled by the replica lag tracker every period
-- and remembered with the time it was seen (datasvc/replicas.py).
-- expect-plan: Result (no table access)
-- retry: safe
SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint
