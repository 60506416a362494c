-- Queries of LiveView.

-- name: load_page
-- One page of registrations after tool_id $1 (keyset, by tool_id), $2 rows, each with its
-- health as the liveness leader last recorded it (none yet: NULLs); `checked`: active
-- checks ran. Health is looked up per row of the page (LIMIT 1 keeps the lateral
-- subquery from being flattened into a join that would scan all of tool_health per page).
SELECT r.id, r.tool_id, r.node_type, r.capabilities, r.endpoints, r.metadata,
       r.health_endpoint, r.last_heartbeat, r.registered_at, r.updated_at,
       h.heartbeat_status, h.check_status, h.last_error,
       h.last_checked_at IS NOT NULL AS checked
FROM (
    SELECT * FROM tool_registrations WHERE tool_id > $1 ORDER BY tool_id LIMIT $2
) r
LEFT JOIN LATERAL (
    SELECT heartbeat_status, check_status, last_error, last_checked_at
    FROM tool_health WHERE tool_health.tool_id = r.tool_id LIMIT 1
) h ON true
ORDER BY r.tool_id
