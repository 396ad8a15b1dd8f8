-- name: insert_lsn :value
-- The primary's WAL insert position, as bytes since 0/0, read right after a write has committed: past
-- that write's commit record, so a replica whose replay position reaches it sees the write. It becomes
-- the X-Consistency-Token of the write's response.
-- expect-plan: Result (no table access)
-- retry: safe
SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint
