-- GET /api/v1/users/export: the users matching the listing's filters and search (the same expressions as
-- sql/users/list.sql), in id order, one keyset page per call: only ids past after_id are read, so each
-- page costs what the first does, and a user present for the whole export is in exactly one page
-- whatever is written meanwhile (ids never change). The service releases the connection between pages.
-- `plan-cache: custom`: planned for its filters on each call (`$n IS NULL OR ...` folds away).
-- No hashed_password.

-- name: export_json :many
-- One page of the export as NDJSON lines, built by the server (json_build_object: what psql's
-- `COPY (SELECT row_to_json(...))` costs), timestamps in UTC with microseconds, RFC 3339.
-- params: status, is_verified, is_admin, search, after_id, limit
-- expect-plan: Index Scan using users_pkey on users under Limit (a rare search term: Bitmap Index Scan on users_search_text_trgm_idx)
-- route: replica
-- retry: safe
-- plan-cache: custom
SELECT
    id,
    json_build_object(
        'id', id,
        'email', email,
        'username', username,
        'full_name', full_name,
        'bio', bio,
        'status', status,
        'is_verified', is_verified,
        'is_admin', is_admin,
        'created_at', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'updated_at', to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    )::text AS json_line
FROM users
WHERE
    id > $5
    AND ($1::text IS NULL OR status = $1)
    AND ($2::boolean IS NULL OR is_verified = $2)
    AND ($3::boolean IS NULL OR is_admin = $3)
    AND (
        $4::text IS NULL
        OR users_search_text(username, email, full_name) LIKE caseless($4)
    )
ORDER BY id
LIMIT $6;

-- name: export_rows :many
-- One page of the export as columns, for the CSV the service writes.
-- params: status, is_verified, is_admin, search, after_id, limit
-- expect-plan: Index Scan using users_pkey on users under Limit (a rare search term: Bitmap Index Scan on users_search_text_trgm_idx)
-- route: replica
-- retry: safe
-- plan-cache: custom
SELECT
    id, email, username, full_name, bio, status, is_verified, is_admin,
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at
FROM users
WHERE
    id > $5
    AND ($1::text IS NULL OR status = $1)
    AND ($2::boolean IS NULL OR is_verified = $2)
    AND ($3::boolean IS NULL OR is_admin = $3)
    AND (
        $4::text IS NULL
        OR users_search_text(username, email, full_name) LIKE caseless($4)
    )
ORDER BY id
LIMIT $6;
