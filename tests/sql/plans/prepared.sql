-- name: plan_counts :one
-- How often this session planned a prepared statement generically and with its values.
-- params: statement
SELECT generic_plans, custom_plans
FROM pg_prepared_statements
WHERE statement = $1
