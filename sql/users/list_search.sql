-- GET /api/v1/users with a search term and count=exact: the same page as users.list__<sort>_<dir>
-- (sql/users/list.sql), but the matching rows are found once and both the total and the page are taken
-- from them. list.sql's sub-select count would run the trigram index scan a second time, and for a
-- search that scan is most of the cost (docs/benchmarks.md). It loses only when nearly every row matches
-- (a term in every email): the matches are then collected before the page is cut, where list.sql's page
-- stops at its LIMIT; a count is costly either way.
-- The handler uses it only for terms of three or more characters, the ones trigrams can serve.

-- name: list_search :many
-- A page of users matching a search term ordered by {{sort}} {{dir}} then id, with their exact total.
-- expand: sort, key, type, index in (created_at, created_at, timestamptz, users_created_at_id_idx),
--   (updated_at, updated_at, timestamptz, users_updated_at_id_idx), (username, username, text, users_username_key),
--   (email, email, text, users_email_id_idx), (full_name, array[full_name], text[], users_full_name_id_idx),
--   (id, id, bigint, users_pkey)
-- expand: dir, op in (asc, >), (desc, <)
-- params: status, is_verified, is_admin, search, limit, offset, cursor_key, cursor_id
-- expect-plan: CTE hits: Bitmap Index Scan on users_search_text_trgm_idx; page: top-N sort of hits, Index Scan using users_pkey
-- route: replica
-- retry: safe
-- plan-cache: custom
WITH hits AS MATERIALIZED (
    SELECT {{key}} AS sort_key, id
    FROM users
    WHERE ($1::text IS NULL OR status = $1)
        AND ($2::boolean IS NULL OR is_verified = $2)
        AND ($3::boolean IS NULL OR is_admin = $3)
        AND users_search_text(username, email, full_name) LIKE caseless($4::text)
)
SELECT
    counted.total,
    counted.total_kind,
    page.*
FROM (SELECT count(*) AS total, 'exact' AS total_kind FROM hits) AS counted
LEFT JOIN LATERAL (
    SELECT
        u.id, u.email, u.username, u.full_name, u.bio, u.status,
        u.is_verified, u.is_admin, u.created_at, u.updated_at
    FROM (
        SELECT sort_key, id
        FROM hits
        WHERE ($8::bigint IS NULL OR (sort_key, id) {{op}} ($7::{{type}}, $8))
        ORDER BY sort_key {{dir}}, id {{dir}}
        LIMIT $5 OFFSET $6
    ) AS h
    INNER JOIN users AS u ON h.id = u.id
    ORDER BY h.sort_key {{dir}}, h.id {{dir}}
) AS page ON true
