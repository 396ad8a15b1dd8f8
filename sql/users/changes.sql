-- name: changes :many
-- The change feed's next page: the audit trail (users_changes, migration 0015) strictly after the
-- position (after_xid, after_seq), in (xid, seq) order, only where xid is below `below`: the oldest
-- transaction of this database still running when this statement's snapshot was taken (else the
-- snapshot's xmax). Every transaction below it has ended by then, committed (visible) or rolled back,
-- so no row can still appear below it: a reader that follows the positions never skips a transaction
-- that commits late, and never sees a row twice.
-- Why not the snapshot's xmin: that counts every database of the cluster, and a long transaction
-- elsewhere would hold the feed back. A running xid is left out only if pg_stat_activity shows a
-- session of another database holding it (sessions never change database); one that ended since the
-- snapshot is kept, which only holds the feed back until the next read.
-- A NULL position starts at the purge horizon (the oldest retained change). Every row also carries,
-- once per page, `below`, the purge horizon (a position behind it has lost changes: 410) and `pending`
-- (committed changes wait at or above `below`, behind a transaction still running). The page's columns
-- are NULL when it is empty. xid8 travels as text: asyncpg has no codec for it. The page's rows come in
-- (xid, seq) order from its LIMIT; the service sorts them again rather than pay an outer ORDER BY here
-- (with one, the statement took 10x as long on 1,000 rows of updates).
-- params: after_xid, after_seq, limit
-- expect-plan: Index Scan using users_changes_pkey on users_changes under Limit
-- retry: safe
WITH bound AS (
    SELECT
        coalesce(
            (
                SELECT min(running.xid)
                FROM pg_snapshot_xip(pg_current_snapshot()) AS running (xid)
                WHERE NOT EXISTS (
                        SELECT FROM pg_stat_activity AS a
                        WHERE
                            a.backend_xid = xid(running.xid)
                            AND a.datname IS DISTINCT FROM current_database()
                    )
            ),
            pg_snapshot_xmax(pg_current_snapshot())
        ) AS below
),

meta AS (
    SELECT
        bound.below,
        horizon.xid AS horizon_xid,
        horizon.seq AS horizon_seq,
        coalesce(
            (
                SELECT p.xid FROM users_changes AS p
                ORDER BY p.xid DESC, p.seq DESC
                LIMIT 1
            ) >= bound.below,
            false
        ) AS pending
    FROM bound
    CROSS JOIN users_changes_horizon AS horizon
),

page AS MATERIALIZED (
    -- Bounds as scalar sub-selects (run once, then constants of the index scan), not as columns of
    -- the rows joined: a bound correlated to another row is no index bound, and the scan reads it all.
    SELECT c.xid, c.seq, c.op, c.user_id, c.version_after, c.changed_at, c.caller, c.changed
    FROM users_changes AS c
    WHERE
        (c.xid, c.seq) > (
            coalesce($1::text::xid8, (SELECT m.horizon_xid FROM meta AS m)),
            coalesce($2::bigint, (SELECT m.horizon_seq FROM meta AS m))
        )
        AND c.xid < (SELECT m.below FROM meta AS m)
    ORDER BY c.xid, c.seq
    LIMIT $3
)

SELECT
    meta.below::text AS below,
    meta.horizon_xid::text AS horizon_xid,
    meta.horizon_seq,
    meta.pending,
    page.xid::text AS xid,
    page.seq,
    page.op,
    page.user_id AS id,
    page.version_after,
    page.changed_at,
    page.caller,
    page.changed
FROM meta
LEFT JOIN page ON true;
