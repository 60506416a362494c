-- Queries of TokenService. Secrets are never stored: only their SHA-256.

-- name: create_token
INSERT INTO registry_tokens (name, scope, secret_hash)
VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING id, name, scope, created_at, last_used_at

-- name: authenticate
WITH t AS (
    SELECT id, name, scope, secret_hash, last_used_at
    FROM registry_tokens
    WHERE secret_hash = $1 AND revoked_at IS NULL
), touch AS (
    -- At most one write a minute per token: "last used" need not be exact.
    UPDATE registry_tokens r SET last_used_at = now()
    FROM t
    WHERE r.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds')
)
SELECT id, name, scope, secret_hash FROM t

-- name: list_tokens
SELECT id, name, scope, created_at, last_used_at
FROM registry_tokens WHERE revoked_at IS NULL ORDER BY name

-- name: revoke_token
UPDATE registry_tokens SET revoked_at = now()
WHERE name = $1 AND revoked_at IS NULL
RETURNING id

-- name: heartbeat_with_token
-- The heartbeat route's fast path: authenticate, check ownership and heartbeat in one
-- statement. Nothing is written unless the token is valid, may write and owns the tool.
WITH t AS (
    SELECT id, scope, last_used_at
    FROM registry_tokens
    WHERE secret_hash = $1 AND revoked_at IS NULL
), touch AS (
    UPDATE registry_tokens r SET last_used_at = now()
    FROM t
    WHERE r.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds')
), hb AS (
    UPDATE tool_registrations tr SET last_heartbeat = now()
    FROM t
    WHERE tr.tool_id = $2
      -- A heartbeat that would move backwards takes the slow path (heartbeat_slow).
      AND (tr.last_heartbeat IS NULL OR tr.last_heartbeat <= now())
      AND (t.scope = 'admin'
           OR (t.scope = 'write' AND EXISTS (
                 SELECT 1 FROM tool_owners o
                 WHERE o.tool_id = tr.tool_id AND o.owner = 'token:' || t.id::text)))
    RETURNING 1
)
SELECT count(*) FROM hb

-- name: token_active
SELECT EXISTS (SELECT 1 FROM registry_tokens WHERE id = $1 AND revoked_at IS NULL)

-- name: rotate_token
-- Replace the active token $1 with a new secret ($3), in one statement: the old one is
-- revoked, the new one keeps the name and (unless $2 names one) the scope, and every
-- tool the old one owned is handed to the new one. No row: there is no such token.
WITH old AS (
    UPDATE registry_tokens SET revoked_at = now()
    WHERE name = $1 AND revoked_at IS NULL
    RETURNING id, scope
), new AS (
    INSERT INTO registry_tokens (name, scope, secret_hash)
    SELECT $1, COALESCE($2::varchar, old.scope), $3 FROM old
    RETURNING id, name, scope, created_at, last_used_at
), moved AS (
    UPDATE tool_owners o SET owner = 'token:' || new.id::text
    FROM old, new
    WHERE o.owner = 'token:' || old.id::text
    RETURNING o.tool_id
)
SELECT new.*, (SELECT count(*) FROM moved) AS tools_moved FROM new
