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
-- are NULL when it is empty. xid8 travels as text: asyncpg has no codec for it.
-- params: after_xid, after_seq, limit
-- expect-plan: Index Scan using users_changes_pkey on users_changes under Limit
-- retry: safe
WITH snap AS (
    SELECT pg_current_snapshot() AS taken
),

bound AS (
    SELECT
        coalesce(
            (
                SELECT min(running.xid)
                FROM pg_snapshot_xip(snap.taken) AS running (xid)
                WHERE NOT EXISTS (
                        SELECT FROM pg_stat_activity AS a
                        WHERE
                            a.backend_xid = xid(running.xid)
                            AND a.datname IS DISTINCT FROM current_database()
                    )
            ),
            pg_snapshot_xmax(snap.taken)
        ) AS below
    FROM snap
)

SELECT
    bound.below::text AS below,
    horizon.xid::text AS horizon_xid,
    horizon.seq AS horizon_seq,
    exists(
        SELECT FROM users_changes AS p
        WHERE p.xid >= bound.below
    ) AS pending,
    page.xid::text AS xid,
    page.seq,
    page.op,
    page.user_id AS id,
    page.version_after,
    page.changed_at,
    page.caller,
    page.changed
FROM bound
CROSS JOIN users_changes_horizon AS horizon
LEFT JOIN LATERAL (
    SELECT c.xid, c.seq, c.op, c.user_id, c.version_after, c.changed_at, c.caller, c.changed
    FROM users_changes AS c
    WHERE
        (c.xid, c.seq) > (coalesce($1::text::xid8, horizon.xid), coalesce($2::bigint, horizon.seq))
        AND c.xid < bound.below
    ORDER BY c.xid, c.seq
    LIMIT $3
) AS page ON true
ORDER BY page.xid, page.seq;
