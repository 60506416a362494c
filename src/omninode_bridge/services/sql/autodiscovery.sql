-- Queries of the auto-discovery bridges (omninode_bridge.autodiscovery).

-- name: owned_tool_ids
SELECT tool_id FROM tool_owners WHERE owner = $1 ORDER BY tool_id
