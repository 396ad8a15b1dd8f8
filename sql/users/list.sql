-- GET /api/v1/users: one statement per sort key and SQL direction, expanded from this template at load time
-- (`datasvc sql list` shows all twelve). The page and its total come from one statement: one round trip,
-- one snapshot.
-- * Offset mode: cursor_key and cursor_id are NULL and `offset` rows are skipped. Keyset mode: offset is 0
--   and only rows strictly past (cursor_key, cursor_id) in this order are read, so a deep page costs what
--   the first does. A walk backwards runs the opposite direction's statement and reverses the rows.
-- * A NULL filter means "no filter". `plan-cache: custom`: the service sends it as the unnamed statement,
--   planned with its values on every call, so `$n IS NULL OR ...` folds away: a generic plan (PostgreSQL's
--   choice after five executions of a named statement) would serve every filter combination at once.
-- * The total is a sub-select on a one-row outer side, evaluated only for the branch `count` picks, and
--   present even when the page is empty (offset past the end). 'exact' counts the filtered rows;
--   'estimated' is the planner's arithmetic: pg_class.reltuples scaled to the table's current size, times
--   the pg_stats frequency of each filter value (NULL with a search term, which it cannot estimate).
-- * search is a LIKE pattern, '%' || term || '%' with \ % _ escaped by the caller, matched ignoring case
--   and Unicode form: caseless() of the pattern against caseless() of username, email and full_name joined
--   by chr(31), the expression of users_search_caseless_trgm_idx (migrations 0004, 0007). caseless() folds
--   the same on any cluster, where ILIKE folds by lc_ctype (not at all beyond ASCII under C). The term
--   holds no control character, so it cannot match across two fields. Trigrams serve terms of 3+ chars.
-- * full_name is nullable, so its key is ARRAY[full_name]: never NULL, equal to itself when the name is
--   NULL, and arrays order a NULL element after every value, so NULL names come last ascending (first
--   descending) and the row comparison walks through them like any other key (users_full_name_id_idx).

-- name: list :many
-- One page of users ordered by {{sort}} {{dir}} then id, with the total `count` asks for.
-- expand: sort, key, type, index in (created_at, created_at, timestamptz, users_created_at_id_idx),
--   (updated_at, updated_at, timestamptz, users_updated_at_id_idx), (username, username, text, users_username_key),
--   (email, email, text, users_email_id_idx), (full_name, array[full_name], text[], users_full_name_id_idx),
--   (id, id, bigint, users_pkey)
-- expand: dir, op in (asc, >), (desc, <)
-- params: status, is_verified, is_admin, search, count, limit, offset, cursor_key, cursor_id
-- plan: Index Scan using {{index}} under Limit (a rare search term: Bitmap Index Scan on users_search_caseless_trgm_idx)
-- route: replica
-- retry: safe
-- plan-cache: custom
SELECT
    CASE $5::text
        WHEN 'exact' THEN (
            SELECT count(*)
            FROM users
            WHERE ($1::text IS NULL OR status = $1)
                AND ($2::boolean IS NULL OR is_verified = $2)
                AND ($3::boolean IS NULL OR is_admin = $3)
                AND (
                    $4::text IS NULL
                    OR caseless(username || chr(31) || email || chr(31) || coalesce(full_name, ''))
                    LIKE caseless($4)
                )
        )
        WHEN 'estimated' THEN (
            SELECT
                round(
                    CASE
                        WHEN c.relpages > 0
                        THEN c.reltuples / c.relpages
                        * (pg_relation_size(c.oid) / current_setting('block_size')::int)
                        ELSE greatest(c.reltuples, 0)
                    END
                    * (
                        -- The product of each filter value's share of the rows, as if independent;
                        -- 0 when a value is too rare to be among the column's most common values.
                        SELECT coalesce(exp(sum(ln(m.freq))), 1) * (count(*) = count(m.freq))::int
                        FROM (
                            VALUES
                            ('status', $1::text),
                            ('is_verified', left($2::boolean::text, 1)),
                            ('is_admin', left($3::boolean::text, 1))
                        ) AS f (attname, filter_value)
                        LEFT JOIN LATERAL (
                            SELECT common.freq
                            FROM pg_stats AS s,
                                unnest(s.most_common_vals::text::text[], s.most_common_freqs)
                                    AS common (val, freq)
                            WHERE s.schemaname = n.nspname AND s.tablename = c.relname
                                AND s.attname = f.attname AND common.val = f.filter_value
                        ) AS m ON true
                        WHERE f.filter_value IS NOT NULL
                    )
                )::bigint
            FROM pg_class AS c
            INNER JOIN pg_namespace AS n ON c.relnamespace = n.oid
            WHERE c.oid = 'users'::regclass AND $4::text IS NULL AND c.reltuples >= 0
        )
    END AS total,
    page.*
FROM (VALUES (1)) AS one (x)
LEFT JOIN LATERAL (
    SELECT
        id, email, username, full_name, bio, status,
        is_verified, is_admin, created_at, updated_at
    FROM users
    WHERE ($1::text IS NULL OR status = $1)
        AND ($2::boolean IS NULL OR is_verified = $2)
        AND ($3::boolean IS NULL OR is_admin = $3)
        AND (
            $4::text IS NULL
            OR caseless(username || chr(31) || email || chr(31) || coalesce(full_name, ''))
            LIKE caseless($4)
        )
        AND ($9::bigint IS NULL OR ({{key}}, id) {{op}} ($8::{{type}}, $9))
    ORDER BY {{key}} {{dir}}, id {{dir}}
    LIMIT $6 OFFSET $7
) AS page ON true
