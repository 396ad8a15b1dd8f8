-- name: replay_state :one
-- What the lag tracker asks each replica every period: whether it is still a standby (false once
-- promoted), the WAL position it has replayed up to (bytes since 0/0; NULL on a primary), and whether
-- replay is paused (pg_wal_replay_pause). Run on the replica itself, never routed; also asked before a
-- read that carries a consistency token no sample has seen the replica reach yet.
-- expect-plan: Result (no table access)
-- retry: safe
SELECT
    pg_is_in_recovery() AS in_recovery,
    (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint AS replay_lsn,
    coalesce(
        CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() <> 'not paused' END,
        false
    ) AS paused
