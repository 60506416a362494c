-- SQL that several queries share, included with {{ name(args) }} (see __init__.py).

-- fragment: fence(generation, lease)
-- The fence of a leader's write (liveness.sql): one row while the lease {lease}
-- is held at {generation} (locked FOR SHARE until the statement's transaction
-- ends, so that no takeover commits in between), or always when {generation}
-- is NULL (an unfenced one-off pass); no row otherwise.
SELECT WHERE {generation}::bigint IS NULL OR EXISTS (
    SELECT FROM liveness_leases l
    WHERE l.name = {lease}::varchar AND l.generation = {generation}::bigint
      AND l.expires_at > clock_timestamp()
    FOR SHARE)

-- fragment: record_created(owner)
-- The CTEs ev and own after a CTE ins of newly inserted registrations: a
-- 'created' change-feed event for each, and {owner} as its owner (none when
-- {owner} is NULL).
ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration)
    SELECT 'created', ins.tool_id, ins.id, to_jsonb(ins) FROM ins
), own AS (
    INSERT INTO tool_owners (tool_id, owner)
    SELECT ins.tool_id, {owner}::varchar FROM ins WHERE {owner}::varchar IS NOT NULL
)

-- fragment: last_verdict(tool, lifetime, bad, good, until)
-- The kind of {tool}'s last {bad} or {good} event at or before {until} in the
-- registration's lifetime that begins at {lifetime}'s (txid, seq) (all of the
-- tool's events when {lifetime}.txid is NULL); {good} when there is none.
COALESCE((
    SELECT e.kind FROM tool_registration_events e
    WHERE e.tool_id = {tool} AND e.kind IN ({bad}, {good})
      AND e.occurred_at <= {until}
      AND ({lifetime}.txid IS NULL OR (e.txid, e.seq) > ({lifetime}.txid, {lifetime}.seq))
    ORDER BY e.occurred_at DESC, e.txid DESC, e.seq DESC
    LIMIT 1), {good})

-- fragment: utc_text(moment)
-- The timestamptz {moment} as text the way pydantic writes a UTC datetime
-- (2026-01-02T03:04:05.123456Z; no fraction when it is 0).
replace(to_char({moment} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '.000000Z', 'Z')

-- fragment: registration_json()
-- The select list of one registration `r` as the API writes it:
-- ModelToolRegistration's fields in its order, timestamps as utc_text.
r.id, r.tool_id, r.node_type,
coalesce(r.capabilities, '{}') AS capabilities,
coalesce(r.endpoints, '{}') AS endpoints,
coalesce(r.metadata, '{}') AS metadata,
r.health_endpoint,
{{ utc_text(r.last_heartbeat) }} AS last_heartbeat,
{{ utc_text(r.registered_at) }} AS registered_at,
{{ utc_text(r.updated_at) }} AS updated_at

-- fragment: tool_search()
-- The registrations that match a search, in tool_id order: capabilities
-- containing $1, node type $2, a heartbeat within $3 s, capabilities matching
-- the SQL/JSON path $4, after tool_id $5 (keyset paging); at most $6 rows.
SELECT * FROM tool_registrations
WHERE ($1::jsonb IS NULL OR capabilities @> $1::jsonb)
  AND ($2::varchar IS NULL OR node_type = $2::varchar)
  AND ($3::float8 IS NULL OR last_heartbeat > now() - make_interval(secs => $3::float8))
  AND ($4::jsonpath IS NULL OR capabilities @@ $4::jsonpath)
  AND ($5::varchar IS NULL OR tool_id > $5::varchar)
ORDER BY tool_id
LIMIT $6
