-- Queries of the auto-discovery bridges (omninode_bridge.autodiscovery).

-- name: owned_tool_ids
SELECT tool_id FROM tool_owners WHERE owner = $1 ORDER BY tool_id

-- name: claim_registration
-- A source ($7) registers a tool that is not registered ($1..$6 as in
-- create_registration), unless another owner released the id less than $8
-- seconds ago and no admin consented (allowed_owner $7 or '*'): then nothing
-- is registered and the held claim is noted on the release. A claim that
-- goes through forgets the release. Answers created, and who holds it back.
WITH held AS (
    UPDATE tool_id_releases r SET claimed_by = $7::varchar, claim_seen_at = now()
    WHERE r.tool_id = $1
      AND r.owner IS DISTINCT FROM $7::varchar
      AND r.released_at > now() - make_interval(secs => $8::float8)
      AND r.allowed_owner IS DISTINCT FROM $7::varchar
      AND r.allowed_owner IS DISTINCT FROM '*'
    RETURNING r.owner, r.released_at
), ins AS (
    INSERT INTO tool_registrations
        (tool_id, node_type, capabilities, endpoints, metadata, health_endpoint, last_heartbeat)
    SELECT $1, $2, $3, $4, $5, $6, now()
    WHERE NOT EXISTS (SELECT FROM held)
    ON CONFLICT (tool_id) DO NOTHING
    RETURNING *
), {{ record_created($7) }}, done AS (
    DELETE FROM tool_id_releases r WHERE r.tool_id = $1 AND EXISTS (SELECT FROM ins)
)
SELECT EXISTS (SELECT FROM ins) AS created,
       EXISTS (SELECT FROM held) AS held,
       (SELECT owner FROM held) AS released_by,
       (SELECT released_at FROM held) AS released_at

-- name: held_claims
-- Claims held back: ids another owner released within $1 seconds that a source wants.
SELECT tool_id, owner AS released_by, released_at, reason, claimed_by, claim_seen_at
FROM tool_id_releases
WHERE claimed_by IS NOT NULL
  AND released_at > now() - make_interval(secs => $1::float8)
  AND NOT EXISTS (SELECT 1 FROM tool_registrations t WHERE t.tool_id = tool_id_releases.tool_id)
ORDER BY tool_id

-- name: allow_claim
-- An admin consents: source $2 ('*': any) may claim the released id $1.
UPDATE tool_id_releases SET allowed_owner = $2::varchar
WHERE tool_id = $1
RETURNING tool_id, owner AS released_by, released_at, claimed_by

-- name: source_tool_counts
SELECT owner, count(*) AS tools FROM tool_owners
WHERE owner LIKE 'source:%' GROUP BY owner ORDER BY owner
