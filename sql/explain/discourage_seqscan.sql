-- name: discourage_seqscan :value
-- Make sequential scans look prohibitively expensive to the planner until this transaction ends:
-- set_config(..., true) is SET LOCAL enable_seqscan = off as a function, so it prepares like any
-- statement. `datasvc sql explain` runs it, inside the transaction it rolls back, to show the plan a
-- statement whose table is still tiny gets once the table has grown.
-- expect-plan: Result (no table access)
SELECT set_config('enable_seqscan', 'off', true)
