-- Queries of ToolDiscoveryService's live index. Heartbeats are not change-feed
-- events: the index reads what heartbeated since its last look, served by
-- idx_tool_registrations_last_heartbeat. Times cross as epoch seconds (float8).

-- name: db_clock
SELECT extract(epoch FROM now())::float8

-- name: routing_page
-- The index's load: only the columns routing needs, for $2 tools after tool_id
-- $1 ('' for the first page), by tool_id (the primary key's order).
SELECT tool_id,
       capabilities -> 'operations' AS operations,
       endpoints,
       extract(epoch FROM last_heartbeat)::float8 AS heartbeat
FROM tool_registrations
WHERE tool_id > $1::varchar
ORDER BY tool_id
LIMIT $2

-- name: heartbeats_since
-- One row: the database clock, then the ids and heartbeats of the tools that
-- heartbeated after $1 (epoch seconds), and of those whose heartbeat moved
-- backwards after $1 (exact: the index takes their heartbeat as it is, not
-- the newer of the two).
SELECT extract(epoch FROM now())::float8 AS db_now,
       coalesce(array_agg(b.tool_id), '{}') AS tool_ids,
       coalesce(array_agg(extract(epoch FROM b.last_heartbeat)::float8), '{}') AS heartbeats,
       coalesce(array_agg(b.exact), '{}') AS exact
FROM (
    SELECT tool_id, last_heartbeat, false AS exact
    FROM tool_registrations
    WHERE last_heartbeat > to_timestamp($1::float8)
    UNION ALL
    SELECT r.tool_id, r.last_heartbeat, true
    FROM heartbeat_rewinds w
    JOIN tool_registrations r ON r.tool_id = w.tool_id
    WHERE w.rewound_at > to_timestamp($1::float8) AND r.last_heartbeat IS NOT NULL
) b

-- name: heartbeats_page
-- The same for every tool with a heartbeat, a page at a time: the periodic
-- full sweep (exact: what the table holds is the truth). $2 tools after
-- tool_id $1 ('' first), by tool_id: the last id is where the next page starts.
SELECT extract(epoch FROM now())::float8 AS db_now,
       coalesce(array_agg(p.tool_id ORDER BY p.tool_id), '{}') AS tool_ids,
       coalesce(array_agg(extract(epoch FROM p.last_heartbeat)::float8 ORDER BY p.tool_id), '{}')
           AS heartbeats,
       coalesce(array_agg(true), '{}') AS exact
FROM (
    SELECT tool_id, last_heartbeat
    FROM tool_registrations
    WHERE tool_id > $1::varchar AND last_heartbeat IS NOT NULL
    ORDER BY tool_id
    LIMIT $2
) p

-- name: find_one_routable
-- What discovery without a cache would run on every call (the benchmark's
-- baseline): one live tool that lists operation $1 and has an endpoint for it
-- ($2: the TTL in seconds). Served by the GIN index on capabilities.
SELECT * FROM tool_registrations
WHERE capabilities @> jsonb_build_object('operations', jsonb_build_array($1::text))
  AND endpoints ? $1::text
  AND last_heartbeat > now() - make_interval(secs => $2::float8)
LIMIT 1

-- name: critical_tool_ids
-- Tools that active health checks (the liveness leader) hold critical: never routed to.
SELECT tool_id FROM tool_health WHERE check_status = 'critical'
