-- name: set_application_name :value
-- Name the request's caller in this session's application_name (pg_stat_activity, log_line_prefix %a),
-- or restore the plain name; connections keep it across requests, so it runs only when the caller changes.
-- params: name
-- expect-plan: Result (no table access)
-- retry: safe
SELECT set_config('application_name', $1, false)
