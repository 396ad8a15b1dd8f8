-- name: set_application_name :value
-- Name the authenticated caller in this session's application_name (pg_stat_activity, log_line_prefix %a);
-- the pool's RESET ALL on release restores the connect-time name.
-- params: name
-- plan: Result (no table access)
SELECT set_config('application_name', $1, false)
