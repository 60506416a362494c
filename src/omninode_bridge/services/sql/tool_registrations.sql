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
), {{ record_created($7) }}
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
), {{ record_created($7) }}
SELECT * FROM ins

-- name: upsert_registration
WITH prev AS (
    SELECT node_type, capabilities, endpoints, metadata, health_endpoint, last_heartbeat
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
    -- $8: replace only a tool that $7 owns; $9: never one that an auto-discovery
    -- source other than $7 owns. Checked in this statement, on the locked
    -- conflicting row, so no concurrent writer can slip in between; the owner
    -- committed with that row, which may be newer than this statement's snapshot
    -- (tool_owner_now, migration 0006).
    WHERE (NOT $8::boolean OR tool_owner_now(t.tool_id) = $7)
      AND (NOT $9::boolean OR NOT coalesce(tool_owner_now(t.tool_id) LIKE 'source:%'
                                           AND tool_owner_now(t.tool_id) IS DISTINCT FROM $7,
                                           false))
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
), own AS (  -- $10: the writer takes over a source's tool
    INSERT INTO tool_owners (tool_id, owner)
    SELECT up.tool_id, $7::varchar FROM up
    WHERE (up.created OR $10::boolean) AND $7::varchar IS NOT NULL
    ON CONFLICT (tool_id) DO UPDATE SET owner = EXCLUDED.owner
        WHERE tool_owners.owner LIKE 'source:%'  -- only a source's tool changes hands
), rw AS (  -- a replace moved a heartbeat given in the future back to now
    INSERT INTO heartbeat_rewinds (tool_id, rewound_at)
    SELECT up.tool_id, now() FROM up, prev
    WHERE NOT up.created AND prev.last_heartbeat > up.last_heartbeat
    ON CONFLICT (tool_id) DO UPDATE SET rewound_at = EXCLUDED.rewound_at
)
SELECT * FROM up

-- name: get_registration
SELECT * FROM tool_registrations WHERE tool_id = $1

-- name: get_registrations
SELECT * FROM tool_registrations WHERE tool_id = ANY($1::varchar[]) ORDER BY tool_id

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
      -- $9: never one that an auto-discovery source other than $10 owns.
      AND (NOT $9::boolean OR NOT EXISTS (
            SELECT 1 FROM tool_owners o
            WHERE o.tool_id = tool_registrations.tool_id AND o.owner LIKE 'source:%'
              AND o.owner IS DISTINCT FROM $10::varchar))
    RETURNING *
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration)
    SELECT 'updated', upd.tool_id, upd.id, to_jsonb(upd) FROM upd
), own AS (  -- $11: $10 takes over a source's tool
    INSERT INTO tool_owners (tool_id, owner)
    SELECT upd.tool_id, $10::varchar FROM upd WHERE $11::boolean AND $10::varchar IS NOT NULL
    ON CONFLICT (tool_id) DO UPDATE SET owner = EXCLUDED.owner
        WHERE tool_owners.owner LIKE 'source:%'  -- only a source's tool changes hands
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
), rel AS (  -- who held the id: a source claims it later only with consent
    INSERT INTO tool_id_releases AS r (tool_id, owner, released_at, reason)
    SELECT del.tool_id, o.owner, now(), $2::text
    FROM del LEFT JOIN tool_owners o ON o.tool_id = del.tool_id
    ON CONFLICT (tool_id) DO UPDATE SET
        owner = EXCLUDED.owner, released_at = EXCLUDED.released_at, reason = EXCLUDED.reason,
        allowed_owner = NULL, claimed_by = NULL, claim_seen_at = NULL
)
SELECT count(*) FROM del

-- name: update_heartbeat
-- The common case in one statement: a heartbeat now, or at $2 within its bounds
-- on the database clock (at most 60 seconds ahead, at most 30 days back; the
-- same bounds as heartbeat_slow and the repository's MAX_FUTURE_HEARTBEAT and
-- MAX_PAST_HEARTBEAT), that does not move the heartbeat backwards. Nothing
-- written: absent, out of bounds or backwards, which heartbeat_slow sorts out.
UPDATE tool_registrations SET last_heartbeat = COALESCE($2::timestamptz, now())
WHERE tool_id = $1
  AND ($2::timestamptz IS NULL
       OR $2::timestamptz BETWEEN now() - interval '30 days' AND now() + interval '60 seconds')
  AND (last_heartbeat IS NULL OR last_heartbeat <= COALESCE($2::timestamptz, now()))

-- name: update_heartbeat_owned
-- As update_heartbeat, now, for a tool that $2 owns.
UPDATE tool_registrations t SET last_heartbeat = now()
WHERE t.tool_id = $1
  AND (t.last_heartbeat IS NULL OR t.last_heartbeat <= now())
  AND EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = t.tool_id AND o.owner = $2)

-- name: update_heartbeats
-- update_heartbeat for many tools; the ids written come back.
UPDATE tool_registrations SET last_heartbeat = COALESCE($2::timestamptz, now())
WHERE tool_id = ANY($1::varchar[])
  AND ($2::timestamptz IS NULL
       OR $2::timestamptz BETWEEN now() - interval '30 days' AND now() + interval '60 seconds')
  AND (last_heartbeat IS NULL OR last_heartbeat <= COALESCE($2::timestamptz, now()))
RETURNING tool_id

-- name: update_heartbeats_owned
-- All or nothing: when any registered id of $1 is not owned by $2, nothing is
-- written and those ids come back in `denied`. Heartbeats that would move
-- backwards are left to heartbeat_slow.
WITH denied AS (
    SELECT r.tool_id FROM tool_registrations r
    WHERE r.tool_id = ANY($1::varchar[])
      AND NOT EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = r.tool_id AND o.owner = $2)
), upd AS (
    UPDATE tool_registrations t SET last_heartbeat = now()
    WHERE t.tool_id = ANY($1::varchar[])
      AND NOT EXISTS (SELECT 1 FROM denied)
      AND (t.last_heartbeat IS NULL OR t.last_heartbeat <= now())
      AND EXISTS (SELECT 1 FROM tool_owners o WHERE o.tool_id = t.tool_id AND o.owner = $2)
    RETURNING t.tool_id
)
SELECT ARRAY(SELECT tool_id FROM denied) AS denied, ARRAY(SELECT tool_id FROM upd) AS updated

-- name: heartbeat_slow
-- Heartbeats of $1 at $2 (NULL: now) that a fast statement did not write. With
-- $4 the time must lie within the bounds on the database clock (verdict
-- 'future' or 'past' otherwise, and nothing is written). A heartbeat that moves
-- backwards is written and the move recorded in heartbeat_rewinds (the
-- discovery index reads those too). $3: only tools this owner owns (NULL: any).
-- The rows are locked first, so the move is judged on the latest heartbeat.
WITH clock AS (
    SELECT now() AS now,
           CASE WHEN NOT $4::boolean OR $2::timestamptz IS NULL THEN 'ok'
                WHEN $2::timestamptz > now() + interval '60 seconds' THEN 'future'
                WHEN $2::timestamptz < now() - interval '30 days' THEN 'past'
                ELSE 'ok' END AS verdict
), old AS (
    SELECT r.tool_id, r.last_heartbeat FROM tool_registrations r
    WHERE r.tool_id = ANY($1::varchar[])
      AND (SELECT verdict FROM clock) = 'ok'
      AND ($3::varchar IS NULL OR EXISTS (
            SELECT 1 FROM tool_owners o WHERE o.tool_id = r.tool_id AND o.owner = $3::varchar))
    ORDER BY r.tool_id
    FOR NO KEY UPDATE OF r
), upd AS (
    UPDATE tool_registrations r SET last_heartbeat = COALESCE($2::timestamptz, now())
    FROM old WHERE r.tool_id = old.tool_id
    RETURNING r.tool_id, r.last_heartbeat < old.last_heartbeat AS rewound
), rw AS (
    INSERT INTO heartbeat_rewinds (tool_id, rewound_at)
    SELECT upd.tool_id, now() FROM upd WHERE upd.rewound
    ON CONFLICT (tool_id) DO UPDATE SET rewound_at = EXCLUDED.rewound_at
)
SELECT (SELECT verdict FROM clock) AS verdict, (SELECT now FROM clock) AS db_now,
       ARRAY(SELECT tool_id FROM upd) AS tool_ids

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
{{ tool_search() }}

-- name: get_owner
SELECT owner FROM tool_owners WHERE tool_id = $1

-- name: registration_owner
-- Whether $1 is registered and who owns it, from one snapshot.
SELECT r.tool_id IS NOT NULL AS registered, o.owner
FROM (SELECT $1::varchar AS tool_id) q
LEFT JOIN tool_registrations r ON r.tool_id = q.tool_id
LEFT JOIN tool_owners o ON o.tool_id = q.tool_id

-- name: get_owners
SELECT tool_id, owner FROM tool_owners WHERE tool_id = ANY($1::varchar[])

-- name: existing_tool_ids
SELECT tool_id FROM tool_registrations WHERE tool_id = ANY($1::varchar[])

-- name: count_per_node_type
SELECT node_type, count(*) AS n FROM tool_registrations GROUP BY node_type

-- name: count_healthy
SELECT count(*) FROM tool_registrations
WHERE last_heartbeat > now() - make_interval(secs => $1::float8)

-- The API's read path answers with JSON that PostgreSQL builds: no row becomes
-- a Python object on the way (fragments.sql's registration_json).

-- name: find_tools_json
-- A page of find_tools as JSON text. find_tools' LIMIT ($6) is one more than
-- the page: `items` holds the rows before that extra one, in tool_id order;
-- `last` is the page's last tool_id when the extra row came back (where the
-- next page starts), NULL on the last page.
SELECT coalesce(json_agg(doc ORDER BY r.n) FILTER (WHERE r.n < $6), '[]')::text AS items,
       CASE WHEN count(*) = $6 THEN max(r.tool_id) FILTER (WHERE r.n = $6 - 1) END AS last
FROM (SELECT t.*, row_number() OVER (ORDER BY t.tool_id) AS n FROM ({{ tool_search() }}) t) r
CROSS JOIN LATERAL (SELECT {{ registration_json() }}) doc

-- name: get_registration_with_health
-- One statement: the registration as JSON text (fragments.sql's registration_json) with its
-- health now: heartbeat freshness against the TTL ($2 s, database clock) beside
-- the active checks' verdict, as ModelToolRegistrationWithHealth writes them.
SELECT row_to_json(doc)::text
FROM tool_registrations r
LEFT JOIN tool_health h ON h.tool_id = r.tool_id
CROSS JOIN LATERAL (
    SELECT coalesce(r.last_heartbeat > now() - make_interval(secs => $2::float8), false) AS fresh
) beat
CROSS JOIN LATERAL (
    SELECT {{ registration_json() }},
           json_build_object(
               'status', CASE WHEN h.check_status = 'critical' THEN 'critical'
                              WHEN beat.fresh THEN 'healthy' ELSE 'stale' END,
               'heartbeat_fresh', beat.fresh,
               'check_status', coalesce(h.check_status, 'unknown'),
               -- since when the verdict holds: known once a check has run
               'check_since', CASE WHEN h.last_checked_at IS NOT NULL THEN
                   {{ utc_text(h.check_changed_at) }} END,
               'last_checked_at', {{ utc_text(h.last_checked_at) }}
           ) AS health
) doc
WHERE r.tool_id = $1
