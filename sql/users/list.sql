-- GET /api/v1/users: one statement per sort key and SQL direction, expanded from this template at load time
-- (`datasvc sql list` shows all twelve). The page and its total come from one statement: one round trip,
-- one snapshot.
-- * Offset mode: cursor_key and cursor_id are NULL and `offset` rows are skipped. Keyset mode: offset is 0
--   and only rows strictly past (cursor_key, cursor_id) in this order are read, so a deep page costs what
--   the first does. A walk backwards runs the opposite direction's statement and reverses the rows.
-- * A NULL filter means "no filter". `plan-cache: custom`: the service sends it as the unnamed statement,
--   planned with its values on every call, so `$n IS NULL OR ...` folds away: a generic plan (PostgreSQL's
--   choice after five executions of a named statement) would serve every filter combination at once.
-- * The total is the one-row outer side: a CASE of which the custom plan keeps only the branch `count` and
--   `search` pick, present even when the page is empty (offset past the end). Without a search term it is
--   sum(n) over the counts table that triggers keep exact (migration 0009): O(1), for `exact` and
--   `estimated` alike. With one, `exact` counts the matches; `estimated` counts up to 1,000 of them
--   (PostgREST's bounded count: a small set is cheap to count exactly), and past that answers the
--   planner's estimate for this very filter (users_estimate, 0013). total_kind says which it is.
-- * The filter is written once, in `matching`: the page and both counts read it. NOT MATERIALIZED: each
--   reference is planned in place, as if the filter were written there, so the page keeps its index scan
--   under the LIMIT and a count its own scan.
-- * search is a LIKE pattern, '%' || term || '%' with \ % _ escaped by the caller, matched ignoring case
--   and Unicode form: caseless() of the pattern against users_search_text() (migration 0012), the
--   expression of users_search_text_trgm_idx. caseless() folds the same on any cluster, where ILIKE folds
--   by lc_ctype (not at all beyond ASCII under C). Trigrams serve terms of 3+ characters.
-- * full_name is nullable, so its key is ARRAY[full_name]: never NULL, equal to itself when the name is
--   NULL, and arrays order a NULL element after every value, so NULL names come last ascending (first
--   descending) and the row comparison walks through them like any other key (users_full_name_id_idx).

-- name: list :many
-- One page of users ordered by {{sort}} {{dir}} then id, with the total `count` asks for and its kind.
-- expand: sort, key, type, index in (created_at, created_at, timestamptz, users_created_at_id_idx),
--   (updated_at, updated_at, timestamptz, users_updated_at_id_idx), (username, username, text, users_username_key),
--   (email, email, text, users_email_id_idx), (full_name, array[full_name], text[], users_full_name_id_idx),
--   (id, id, bigint, users_pkey)
-- expand: dir, op in (asc, >), (desc, <)
-- params: status, is_verified, is_admin, search, count, limit, offset, cursor_key, cursor_id
-- expect-plan: Index Scan using {{index}} under Limit (a rare search term: Bitmap Index Scan on users_search_text_trgm_idx); total: Index Only Scan using users_counts_combination_idx (Seq Scan while users_counts is one page)
-- route: replica
-- retry: safe
-- plan-cache: custom
WITH matching AS NOT MATERIALIZED (
    SELECT
        id, email, username, full_name, bio, status,
        is_verified, is_admin, created_at, updated_at
    FROM users
    WHERE ($1::text IS NULL OR status = $1)
        AND ($2::boolean IS NULL OR is_verified = $2)
        AND ($3::boolean IS NULL OR is_admin = $3)
        AND ($4::text IS NULL OR users_search_text(username, email, full_name) LIKE caseless($4))
),

-- MATERIALIZED: the outer CASE reads total twice, and must not run its sub-select twice.
counted AS MATERIALIZED (
    -- CASE, not UNION ALL or WHERE: the custom plan folds the branches `count` and `search` do not take
    -- away entirely, sub-selects included (so the plan never shows, let alone runs, their scans).
    SELECT
        CASE
            WHEN $5::text = 'none' THEN NULL
            -- No search term: the exact total from the counts table, for count=exact and estimated alike.
            -- Its own filter: users_counts has the three filtered columns and a count per combination.
            WHEN $4::text IS NULL THEN (
                SELECT coalesce(sum(n), 0)::bigint
                FROM users_counts
                WHERE ($1::text IS NULL OR status = $1)
                    AND ($2::boolean IS NULL OR is_verified = $2)
                    AND ($3::boolean IS NULL OR is_admin = $3)
            )
            -- A search term, count=exact: count the matching rows.
            WHEN $5::text = 'exact' THEN (SELECT count(*) FROM matching)
            -- A search term, count=estimated: count up to 1,000 matches; past that, the planner's
            -- estimate (never below what was counted).
            ELSE (
                SELECT
                    CASE
                        WHEN count(*) <= 1000 THEN count(*)
                        ELSE greatest(users_estimate($1, $2, $3, $4), 1001)
                    END AS bounded
                FROM (
                    SELECT FROM matching
                    -- Which 1,001 rows does not matter: they are only counted.
                    LIMIT 1001  -- noqa: AM09
                ) AS matches
            )
        END AS total
)

SELECT
    counted.total,
    CASE
        WHEN $5::text = 'none' THEN NULL
        WHEN $5::text = 'estimated' AND $4::text IS NOT NULL AND counted.total > 1000 THEN 'estimated'
        ELSE 'exact'
    END AS total_kind,
    page.*
FROM counted
LEFT JOIN LATERAL (
    SELECT
        id, email, username, full_name, bio, status,
        is_verified, is_admin, created_at, updated_at
    FROM matching
    WHERE $9::bigint IS NULL OR ({{key}}, id) {{op}} ($8::{{type}}, $9)
    ORDER BY {{key}} {{dir}}, id {{dir}}
    LIMIT $6 OFFSET $7
) AS page ON true
