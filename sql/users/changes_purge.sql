-- name: changes_purge :value
-- Purge one batch of the audit trail: at most `batch` of its oldest rows, while older than `retention`
-- (users_changes_purge, migration 0015); returns how many went. Each call is its own short transaction.
-- params: retention, batch
-- expect-plan: Function Scan (users_changes_purge: Index Scan using users_changes_pkey under Limit)
SELECT users_changes_purge($1::interval, $2::integer);
