-- name: settings_in_force :one
-- The timeouts (in milliseconds) and plan_cache_mode this session runs under. DATASVC_POOL_MODE=transaction sends no session SET, so at start-up these
-- must already be the role's (migration 0008) and match the service's settings (datasvc/pooler.py).
-- expect-plan: Function Scan on pg_show_all_settings
-- retry: safe
SELECT
    current_user AS role_name,
    max(s.setting) FILTER (WHERE s.name = 'statement_timeout') AS statement_timeout,
    max(s.setting) FILTER (WHERE s.name = 'lock_timeout') AS lock_timeout,
    max(s.setting) FILTER (
        WHERE s.name = 'idle_in_transaction_session_timeout'
    ) AS idle_in_transaction_session_timeout,
    max(s.setting) FILTER (WHERE s.name = 'plan_cache_mode') AS plan_cache_mode
FROM pg_settings AS s
WHERE
    s.name IN (
        'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'plan_cache_mode'
    )
