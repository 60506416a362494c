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
-- Answers the token (id, name, scope) when the heartbeat was written, no row otherwise.
WITH t AS (
    SELECT id, name, scope, last_used_at
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
SELECT t.id, t.name, t.scope FROM t WHERE EXISTS (SELECT FROM hb)

-- name: heartbeat_with_tokens
-- heartbeat_with_token for a batch of requests (the heartbeat coalescer): request i
-- carries the secret hash $1[i] and the tool id $2[i], and is judged alone, so that a
-- bad one does not stop the others. Answers a row per request written: its position
-- (1-based) and its token (id, name, scope); a request not among them takes the slow
-- path for its error, as above.
-- Rows are locked in tool_id order first: batches of two replicas never deadlock.
WITH req AS (
    SELECT q.pos, q.secret_hash, q.tool_id
    FROM unnest($1::bytea[], $2::varchar[]) WITH ORDINALITY AS q(secret_hash, tool_id, pos)
), t AS (
    SELECT id, name, scope, secret_hash, last_used_at
    FROM registry_tokens
    WHERE secret_hash IN (SELECT secret_hash FROM req) AND revoked_at IS NULL
), touch AS (
    UPDATE registry_tokens r SET last_used_at = now()
    FROM t
    WHERE r.id = t.id AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '60 seconds')
), allowed AS (
    SELECT req.pos, req.tool_id, t.id, t.name, t.scope
    FROM req JOIN t ON t.secret_hash = req.secret_hash
    WHERE t.scope = 'admin'
       OR (t.scope = 'write' AND EXISTS (
             SELECT 1 FROM tool_owners o
             WHERE o.tool_id = req.tool_id AND o.owner = 'token:' || t.id::text))
), lk AS (
    SELECT tr.tool_id FROM tool_registrations tr
    WHERE tr.tool_id IN (SELECT tool_id FROM allowed)
      -- A heartbeat that would move backwards takes the slow path (heartbeat_slow).
      AND (tr.last_heartbeat IS NULL OR tr.last_heartbeat <= now())
    ORDER BY tr.tool_id
    FOR NO KEY UPDATE OF tr
), hb AS (
    UPDATE tool_registrations tr SET last_heartbeat = now()
    FROM lk
    WHERE tr.tool_id = lk.tool_id
      AND (tr.last_heartbeat IS NULL OR tr.last_heartbeat <= now())
    RETURNING tr.tool_id
)
SELECT allowed.pos, allowed.id, allowed.name, allowed.scope
FROM allowed JOIN hb ON hb.tool_id = allowed.tool_id

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
