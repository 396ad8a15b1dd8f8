-- name: notify :exec
-- Wake every service process's change-feed long polls: sent by the process that just wrote a user, on
-- its listening connection, after the write committed (datasvc/listener.py says why not the trigger).
-- expect-plan: Result
SELECT pg_notify('datasvc_users_changes', '');
