-- Queries of LiveView (registrations come from the repository's pages).

-- name: all_health
-- Health as the liveness leader last recorded it; `checked`: active checks ran.
SELECT tool_id, heartbeat_status, check_status, last_error,
       last_checked_at IS NOT NULL AS checked
FROM tool_health
