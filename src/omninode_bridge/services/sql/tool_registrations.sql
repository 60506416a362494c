-- Queries of ToolRegistrationRepository. Every write that changes a
-- registration records a change-feed event in the same statement; heartbeats
-- are not events.

-- name: create_registration
WITH ins AS (
    INSERT INTO tool_registrations
        (tool_id, node_type, capabilities, endpoints, metadata, health_endpoint, last_heartbeat)
    VALUES ($1, $2, $3, $4, $5, $6, now())
    ON CONFLICT (tool_id) DO NOTHING
    RETURNING *
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration)
    SELECT 'created', ins.tool_id, ins.id, to_jsonb(ins) FROM ins
), own AS (
    INSERT INTO tool_owners (tool_id, owner)
    SELECT ins.tool_id, $7::varchar FROM ins WHERE $7::varchar IS NOT NULL
)
SELECT * FROM ins

-- name: create_registrations
WITH ins AS (
    INSERT INTO tool_registrations
        (tool_id, node_type, capabilities, endpoints, metadata, health_endpoint, last_heartbeat)
    SELECT t.tool_id, t.node_type, t.capabilities, t.endpoints, t.metadata, t.health_endpoint, now()
    FROM unnest($1::varchar[], $2::varchar[], $3::jsonb[], $4::jsonb[], $5::jsonb[], $6::varchar[])
        AS t(tool_id, node_type, capabilities, endpoints, metadata, health_endpoint)
    ON CONFLICT (tool_id) DO NOTHING
    RETURNING *
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration)
    SELECT 'created', ins.tool_id, ins.id, to_jsonb(ins) FROM ins
), own AS (
    INSERT INTO tool_owners (tool_id, owner)
    SELECT ins.tool_id, $7::varchar FROM ins WHERE $7::varchar IS NOT NULL
)
SELECT * FROM ins

-- name: upsert_registration
WITH prev AS (
    SELECT node_type, capabilities, endpoints, metadata, health_endpoint
    FROM tool_registrations WHERE tool_id = $1
), up AS (
    INSERT INTO tool_registrations AS t
        (tool_id, node_type, capabilities, endpoints, metadata, health_endpoint, last_heartbeat)
    VALUES ($1, $2, $3, $4, $5, $6, now())
    ON CONFLICT (tool_id) DO UPDATE SET
        node_type = EXCLUDED.node_type,
        capabilities = EXCLUDED.capabilities,
        endpoints = EXCLUDED.endpoints,
        metadata = EXCLUDED.metadata,
        health_endpoint = EXCLUDED.health_endpoint,
        last_heartbeat = now(),
        updated_at = CASE
            WHEN (t.node_type, t.capabilities, t.endpoints, t.metadata, t.health_endpoint)
                IS DISTINCT FROM (EXCLUDED.node_type, EXCLUDED.capabilities, EXCLUDED.endpoints,
                                  EXCLUDED.metadata, EXCLUDED.health_endpoint)
            THEN now() ELSE t.updated_at END
    -- $8: replace only a tool that $7 owns. Checked in this statement, on the
    -- locked conflicting row, so no concurrent writer can slip in between.
    WHERE NOT $8::boolean
       OR EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = t.tool_id AND o.owner = $7)
    RETURNING t.*, (t.xmax = 0) AS created
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration)
    SELECT CASE WHEN up.created THEN 'created' ELSE 'updated' END,
           up.tool_id, up.id, to_jsonb(up) - 'created'
    FROM up
    WHERE up.created OR NOT EXISTS (
        SELECT 1 FROM prev p
        WHERE (p.node_type, p.capabilities, p.endpoints, p.metadata, p.health_endpoint)
            IS NOT DISTINCT FROM (up.node_type, up.capabilities, up.endpoints, up.metadata,
                                  up.health_endpoint)
    )
), own AS (
    INSERT INTO tool_owners (tool_id, owner)
    SELECT up.tool_id, $7::varchar FROM up WHERE up.created AND $7::varchar IS NOT NULL
)
SELECT * FROM up

-- name: get_registration
SELECT * FROM tool_registrations WHERE tool_id = $1

-- name: update_registration
WITH upd AS (
    UPDATE tool_registrations SET
        node_type = COALESCE($2, node_type),
        capabilities = COALESCE($3, capabilities),
        endpoints = COALESCE($4, endpoints),
        metadata = COALESCE($5, metadata),
        health_endpoint = CASE WHEN $6::boolean THEN $7 ELSE health_endpoint END,
        updated_at = now()
    WHERE tool_id = $1
      -- $8: change only a tool that this owner owns (NULL: anyone may).
      AND ($8::varchar IS NULL OR EXISTS (
            SELECT 1 FROM tool_owners o
            WHERE o.tool_id = tool_registrations.tool_id AND o.owner = $8))
    RETURNING *
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration)
    SELECT 'updated', upd.tool_id, upd.id, to_jsonb(upd) FROM upd
)
SELECT * FROM upd

-- name: delete_registration
WITH del AS (
    DELETE FROM tool_registrations t
    WHERE t.tool_id = $1
      AND ($3::varchar IS NULL
           OR EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = t.tool_id AND o.owner = $3))
    RETURNING t.*
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration, reason)
    SELECT 'deleted', del.tool_id, del.id, to_jsonb(del), $2::text FROM del
)
SELECT count(*) FROM del

-- name: update_heartbeat
UPDATE tool_registrations SET last_heartbeat = COALESCE($2::timestamptz, now())
WHERE tool_id = $1

-- name: update_heartbeat_owned
UPDATE tool_registrations t SET last_heartbeat = now()
WHERE t.tool_id = $1
  AND EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = t.tool_id AND o.owner = $2)

-- name: update_heartbeats
UPDATE tool_registrations SET last_heartbeat = COALESCE($2::timestamptz, now())
WHERE tool_id = ANY($1::varchar[])
RETURNING tool_id

-- name: update_heartbeats_owned
-- All or nothing: when any registered id of $1 is not owned by $2, nothing is
-- written and those ids come back in `denied`.
WITH denied AS (
    SELECT r.tool_id FROM tool_registrations r
    WHERE r.tool_id = ANY($1::varchar[])
      AND NOT EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = r.tool_id AND o.owner = $2)
), upd AS (
    UPDATE tool_registrations t SET last_heartbeat = now()
    WHERE t.tool_id = ANY($1::varchar[])
      AND NOT EXISTS (SELECT 1 FROM denied)
      AND EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = t.tool_id AND o.owner = $2)
    RETURNING t.tool_id
)
SELECT ARRAY(SELECT tool_id FROM denied) AS denied, ARRAY(SELECT tool_id FROM upd) AS updated

-- name: list_all
SELECT * FROM tool_registrations ORDER BY tool_id

-- name: list_by_node_type
SELECT * FROM tool_registrations WHERE node_type = $1 ORDER BY tool_id

-- name: find_by_capability
SELECT * FROM tool_registrations WHERE capabilities @> $1::jsonb ORDER BY tool_id

-- name: get_healthy_tools
SELECT * FROM tool_registrations
WHERE last_heartbeat > now() - make_interval(secs => $1::float8)
ORDER BY tool_id

-- name: count_all
SELECT count(*) FROM tool_registrations

-- name: count_by_node_type
SELECT count(*) FROM tool_registrations WHERE node_type = $1

-- name: bound_client_query
-- For the rest of the transaction: a custom plan per call, and the statement
-- timeout ($1, e.g. '5000ms') of a query whose shape a client chose.
SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('statement_timeout', $1::text, true)

-- name: check_jsonpath
SELECT $1::text::jsonpath

-- name: find_tools
SELECT * FROM tool_registrations
WHERE ($1::jsonb IS NULL OR capabilities @> $1::jsonb)
  AND ($2::varchar IS NULL OR node_type = $2::varchar)
  AND ($3::float8 IS NULL OR last_heartbeat > now() - make_interval(secs => $3::float8))
  AND ($4::jsonpath IS NULL OR capabilities @@ $4::jsonpath)
  AND ($5::varchar IS NULL OR tool_id > $5::varchar)
ORDER BY tool_id
LIMIT $6

-- name: get_owner
SELECT owner FROM tool_owners WHERE tool_id = $1

-- name: get_owners
SELECT tool_id, owner FROM tool_owners WHERE tool_id = ANY($1::varchar[])

-- name: existing_tool_ids
SELECT tool_id FROM tool_registrations WHERE tool_id = ANY($1::varchar[])

-- name: count_per_node_type
SELECT node_type, count(*) AS n FROM tool_registrations GROUP BY node_type

-- name: count_healthy
SELECT count(*) FROM tool_registrations
WHERE last_heartbeat > now() - make_interval(secs => $1::float8)
