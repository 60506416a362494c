-- Queries of omninode_bridge.liveness: the leader's lease, its passes (heartbeat
-- sweep, reaper, active checks) and the health history. Every transition
-- records a change-feed event in the same statement.
--
-- Leadership is a lease (liveness_leases), judged on the database clock
-- (clock_timestamp(), never a replica's clock). Writes of a pass are fenced:
-- with a leader's fence ($generation, $name) they take effect only while that
-- generation still holds an unexpired lease, and they hold the lease row FOR
-- SHARE until they commit, so a takeover (which updates the row) waits for a
-- fenced write in flight and a deposed leader's later writes find another
-- generation. A NULL generation is an unfenced one-off pass (the CLI). Each
-- fenced statement answers one row: whether the fence held (leading) and the
-- ids it changed. The fence is fragments.sql's fence(generation, lease).

-- name: lead
-- Wait (up to the session's lock_timeout) for the leader's advisory lock.
SELECT pg_advisory_lock($1::bigint)

-- name: lease_acquire
-- Take lease $1 for holder $2 for $3 seconds if it is free: never taken, expired,
-- or taken under the advisory lock $5 by a backend that no longer holds it (its
-- session ended). $4: this backend's pid when it holds that lock, else NULL.
-- Answers the new generation, or no row.
INSERT INTO liveness_leases AS l
    (name, generation, holder, holder_pid, acquired_at, renewed_at, expires_at)
VALUES ($1::varchar, 1, $2::varchar, $4::int, clock_timestamp(), clock_timestamp(),
        clock_timestamp() + make_interval(secs => $3::float8))
ON CONFLICT (name) DO UPDATE SET
    generation = l.generation + 1,
    holder = EXCLUDED.holder,
    holder_pid = EXCLUDED.holder_pid,
    acquired_at = clock_timestamp(),
    renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => $3::float8)
WHERE l.expires_at <= clock_timestamp()
   OR (l.holder_pid IS NOT NULL AND NOT EXISTS (
        SELECT FROM pg_locks k
        WHERE k.locktype = 'advisory' AND k.granted AND k.pid = l.holder_pid AND k.objsubid = 1
          AND ((k.classid::bigint << 32) | k.objid::bigint) = $5::bigint))
RETURNING generation

-- name: lease_renew
-- Extend lease $1 of generation $2 by $3 seconds from now; no row when it
-- expired or another generation holds it (the caller no longer leads).
UPDATE liveness_leases
SET renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + make_interval(secs => $3::float8)
WHERE name = $1::varchar AND generation = $2::bigint AND expires_at > clock_timestamp()
RETURNING generation

-- name: lease_release
-- A leader stepping down on purpose: its lease expires now, so a replica takes over at once.
UPDATE liveness_leases SET expires_at = clock_timestamp()
WHERE name = $1::varchar AND generation = $2::bigint AND expires_at > clock_timestamp()

-- name: lease_state
SELECT name, generation, holder, holder_pid, acquired_at, renewed_at, expires_at,
       expires_at > clock_timestamp() AS held
FROM liveness_leases WHERE name = $1::varchar

-- name: mark_stale
-- Tools whose heartbeat passed the TTL ($1 s) since the last sweep: the event is
-- dated when the heartbeat expired (last heartbeat + TTL), not when it was seen,
-- but never before the tool's registration (a heartbeat time given in the past).
WITH fence AS (
    {{ fence($2, $3) }}
), due AS (
    SELECT r.tool_id, r.id, COALESCE(r.last_heartbeat, r.registered_at) AS seen
    FROM tool_registrations r
    LEFT JOIN tool_health h ON h.tool_id = r.tool_id
    WHERE COALESCE(h.heartbeat_status, 'healthy') = 'healthy'
      AND COALESCE(r.last_heartbeat, r.registered_at) <= now() - make_interval(secs => $1::float8)
      AND EXISTS (SELECT FROM fence)
    FOR KEY SHARE OF r
), up AS (
    INSERT INTO tool_health AS h (tool_id, heartbeat_status, heartbeat_changed_at)
    SELECT due.tool_id, 'stale',
           GREATEST(due.seen + make_interval(secs => $1::float8),
                    (SELECT max(e.occurred_at) FROM tool_registration_events e
                     WHERE e.tool_id = due.tool_id AND e.kind = 'created'))
    FROM due
    ON CONFLICT (tool_id) DO UPDATE
        SET heartbeat_status = 'stale', heartbeat_changed_at = EXCLUDED.heartbeat_changed_at
        WHERE h.heartbeat_status = 'healthy'
    RETURNING h.tool_id, h.heartbeat_changed_at
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, reason, occurred_at)
    SELECT 'stale', due.tool_id, due.id,
           'no heartbeat since '
           || to_char(due.seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
           || ' (TTL ' || $1::float8 || 's)',
           up.heartbeat_changed_at
    FROM up JOIN due ON due.tool_id = up.tool_id
)
SELECT EXISTS (SELECT FROM fence) AS leading,
       coalesce((SELECT array_agg(up.tool_id ORDER BY up.tool_id) FROM up), '{}') AS tool_ids

-- name: mark_healthy
-- Stale tools heartbeating again (within the TTL, $1 s). The event is dated at the
-- newest heartbeat seen: the latest moment the tool can have come back.
WITH fence AS (
    {{ fence($2, $3) }}
), up AS (
    UPDATE tool_health h
    SET heartbeat_status = 'healthy',
        heartbeat_changed_at = GREATEST(r.last_heartbeat, h.heartbeat_changed_at)
    FROM tool_registrations r
    WHERE r.tool_id = h.tool_id
      AND h.heartbeat_status = 'stale'
      AND r.last_heartbeat > now() - make_interval(secs => $1::float8)
      AND EXISTS (SELECT FROM fence)
    RETURNING h.tool_id, r.id, r.last_heartbeat, h.heartbeat_changed_at
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, reason, occurred_at)
    SELECT 'healthy', up.tool_id, up.id,
           'heartbeat at '
           || to_char(up.last_heartbeat AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           up.heartbeat_changed_at
    FROM up
)
SELECT EXISTS (SELECT FROM fence) AS leading,
       coalesce((SELECT array_agg(up.tool_id ORDER BY up.tool_id) FROM up), '{}') AS tool_ids

-- name: reap_candidates
-- How many tools are registered, and which have not heartbeated within the
-- retention ($1 s): one snapshot, so the share is exact.
SELECT (SELECT count(*) FROM tool_registrations) AS total,
       coalesce(array_agg(tool_id ORDER BY tool_id), '{}') AS tool_ids,
       coalesce(array_agg(COALESCE(last_heartbeat, registered_at) ORDER BY tool_id), '{}')
           AS last_seen
FROM tool_registrations
WHERE COALESCE(last_heartbeat, registered_at, '-infinity'::timestamptz)
      < now() - make_interval(secs => $1::float8)

-- name: reap
-- Remove those of $1 still past the retention ($2 s): a tool that heartbeated
-- since the candidates were read stays.
WITH fence AS (
    {{ fence($3, $4) }}
), del AS (
    DELETE FROM tool_registrations r
    WHERE r.tool_id = ANY($1::varchar[])
      AND COALESCE(r.last_heartbeat, r.registered_at, '-infinity'::timestamptz)
          < now() - make_interval(secs => $2::float8)
      AND EXISTS (SELECT FROM fence)
    RETURNING r.*
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, registration, reason)
    SELECT 'deleted', del.tool_id, del.id, to_jsonb(del),
           'reaped: no heartbeat since '
           || COALESCE(to_char(COALESCE(del.last_heartbeat, del.registered_at) AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), 'ever')
           || ' (retention ' || $2::float8 || 's)'
    FROM del
), rel AS (  -- who held the id: a source claims it later only with consent
    INSERT INTO tool_id_releases AS r (tool_id, owner, released_at, reason)
    SELECT del.tool_id, o.owner, now(), 'reaped'
    FROM del LEFT JOIN tool_owners o ON o.tool_id = del.tool_id
    ON CONFLICT (tool_id) DO UPDATE SET
        owner = EXCLUDED.owner, released_at = EXCLUDED.released_at, reason = EXCLUDED.reason,
        allowed_owner = NULL, claimed_by = NULL, claim_seen_at = NULL
)
SELECT EXISTS (SELECT FROM fence) AS leading,
       coalesce((SELECT array_agg(del.tool_id ORDER BY del.tool_id) FROM del), '{}') AS tool_ids

-- name: check_targets
-- Every tool with its health endpoint and its check state (no row: unchecked).
SELECT r.tool_id, r.health_endpoint,
       COALESCE(h.check_status, 'unknown') AS check_status,
       COALESCE(h.consecutive_failures, 0) AS failures,
       COALESCE(h.consecutive_successes, 0) AS successes,
       COALESCE(h.check_generation, 0) AS generation
FROM tool_registrations r
LEFT JOIN tool_health h ON h.tool_id = r.tool_id
ORDER BY r.tool_id

-- name: prune_releases
-- Forget who held released tool ids once they are older than $1 seconds.
DELETE FROM tool_id_releases WHERE released_at < now() - make_interval(secs => $1::float8)

-- name: check_schedule
-- What the leader's check scheduler needs of every tool with a health endpoint
-- (or a check status to reset, its endpoint gone): its check state, and whether
-- its heartbeat is within the TTL ($1 s) by the database clock. One page: the
-- tools after tool_id $2, in tool_id order, at most $3.
SELECT r.tool_id, r.health_endpoint,
       COALESCE(h.check_status, 'unknown') AS check_status,
       COALESCE(h.consecutive_failures, 0) AS failures,
       COALESCE(h.consecutive_successes, 0) AS successes,
       COALESCE(h.check_generation, 0) AS generation,
       COALESCE(r.last_heartbeat, r.registered_at) > now() - make_interval(secs => $1::float8)
           AS fresh
FROM tool_registrations r
LEFT JOIN tool_health h ON h.tool_id = r.tool_id
WHERE r.tool_id > $2::varchar
  AND (r.health_endpoint IS NOT NULL OR COALESCE(h.check_status, 'unknown') <> 'unknown')
ORDER BY r.tool_id
LIMIT $3::int

-- name: record_checks
-- Store a pass's results. Each row is written only if its check state is still
-- the one the pass read (generation $8), so two passes never apply one result
-- twice or on top of each other; transitions ($9 kind, $10 reason) become events.
WITH fence AS (
    {{ fence($11, $12) }}
), input AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::int[], $4::int[], $5::boolean[],
                         $6::float8[], $7::text[], $8::bigint[], $9::varchar[], $10::text[])
        AS t(tool_id, status, failures, successes, checked, latency_ms, error, generation,
             kind, reason)
), up AS (
    INSERT INTO tool_health AS h
        (tool_id, check_status, consecutive_failures, consecutive_successes, last_checked_at,
         last_latency_ms, last_error, check_changed_at, check_generation)
    SELECT i.tool_id, i.status, i.failures, i.successes, CASE WHEN i.checked THEN now() END,
           i.latency_ms, i.error, now(), i.generation + 1
    FROM input i
    JOIN tool_registrations r ON r.tool_id = i.tool_id
    WHERE EXISTS (SELECT FROM fence)
    FOR KEY SHARE OF r
    ON CONFLICT (tool_id) DO UPDATE SET
        check_status = EXCLUDED.check_status,
        consecutive_failures = EXCLUDED.consecutive_failures,
        consecutive_successes = EXCLUDED.consecutive_successes,
        last_checked_at = EXCLUDED.last_checked_at,
        last_latency_ms = EXCLUDED.last_latency_ms,
        last_error = EXCLUDED.last_error,
        check_changed_at = CASE WHEN h.check_status IS DISTINCT FROM EXCLUDED.check_status
                                THEN EXCLUDED.check_changed_at ELSE h.check_changed_at END,
        check_generation = EXCLUDED.check_generation
    WHERE h.check_generation = EXCLUDED.check_generation - 1
    RETURNING h.tool_id
), ev AS (
    INSERT INTO tool_registration_events (kind, tool_id, registration_id, reason)
    SELECT i.kind, i.tool_id, r.id, i.reason
    FROM up
    JOIN input i ON i.tool_id = up.tool_id
    JOIN tool_registrations r ON r.tool_id = up.tool_id
    WHERE i.kind IS NOT NULL
)
SELECT EXISTS (SELECT FROM fence) AS leading,
       coalesce((SELECT array_agg(up.tool_id) FROM up), '{}') AS tool_ids

-- name: get_health
SELECT r.tool_id, r.health_endpoint, r.last_heartbeat,
       COALESCE(h.check_status, 'unknown') AS check_status,
       COALESCE(h.consecutive_failures, 0) AS failures,
       COALESCE(h.consecutive_successes, 0) AS successes,
       h.last_checked_at, h.last_latency_ms, h.last_error, h.check_changed_at,
       COALESCE(h.heartbeat_status, 'healthy') AS heartbeat_status, h.heartbeat_changed_at,
       r.last_heartbeat > now() - make_interval(secs => $2::float8) AS fresh
FROM tool_registrations r
LEFT JOIN tool_health h ON h.tool_id = r.tool_id
WHERE r.tool_id = $1

-- name: routable_tools
-- Routable now for operation $1: heartbeat within the TTL ($2 s), not critical,
-- listing the operation and holding an endpoint for it.
SELECT r.* FROM tool_registrations r
LEFT JOIN tool_health h ON h.tool_id = r.tool_id
WHERE r.capabilities @> jsonb_build_object('operations', jsonb_build_array($1::text))
  AND r.endpoints ? $1::text
  AND r.last_heartbeat > now() - make_interval(secs => $2::float8)
  AND h.check_status IS DISTINCT FROM 'critical'
ORDER BY r.tool_id

-- name: tool_history
-- e.txid, not txid: the bare name would sort the text column of the select list.
SELECT e.txid::text AS txid, e.seq, e.occurred_at, e.kind, e.tool_id, e.registration_id,
       e.registration, e.reason
FROM tool_registration_events e
WHERE e.tool_id = $1
ORDER BY e.occurred_at, e.txid, e.seq
LIMIT $2

-- name: routable_at
-- Tools routable for operation $1 at time $2 (TTL $3 s), rebuilt from the change
-- feed. The registration at $2 is the newest created/updated/deleted event at or
-- before it; without one (older history pruned, or never changed), the oldest
-- later event (a later update or delete means it existed) or the row itself.
-- Heartbeat freshness: exact from the row when $2 is after the current
-- registration's newest heartbeat, else the newest stale/healthy event of that
-- registration's lifetime; check status: the newest critical/passing event. A
-- lifetime's health events are those after its created event in feed order
-- (a stale event can be dated back to when the heartbeat expired).
WITH reg_events AS (
    SELECT tool_id, kind, registration, occurred_at, txid, seq
    FROM tool_registration_events
    WHERE kind IN ('created', 'updated', 'deleted')
), before AS (
    SELECT DISTINCT ON (tool_id) tool_id, kind, registration
    FROM reg_events
    WHERE occurred_at <= $2::timestamptz
    ORDER BY tool_id, occurred_at DESC, txid DESC, seq DESC
), later AS (
    SELECT DISTINCT ON (e.tool_id) e.tool_id, e.kind, e.registration
    FROM reg_events e
    WHERE e.occurred_at > $2::timestamptz
      AND NOT EXISTS (SELECT FROM before b WHERE b.tool_id = e.tool_id)
    ORDER BY e.tool_id, e.occurred_at, e.txid, e.seq
), lifetime AS (  -- where the registration alive at $2 began, in feed order
    SELECT DISTINCT ON (tool_id) tool_id, txid, seq
    FROM reg_events
    WHERE kind IN ('created', 'deleted') AND occurred_at <= $2::timestamptz
    ORDER BY tool_id, occurred_at DESC, txid DESC, seq DESC
), state AS (
    SELECT tool_id, registration FROM before WHERE kind <> 'deleted'
    UNION ALL
    SELECT tool_id, registration FROM later WHERE kind <> 'created'
    UNION ALL
    SELECT r.tool_id, to_jsonb(r) FROM tool_registrations r
    WHERE r.registered_at <= $2::timestamptz
      AND NOT EXISTS (SELECT FROM reg_events e WHERE e.tool_id = r.tool_id)
), offering AS (
    SELECT s.tool_id FROM state s
    WHERE s.registration -> 'capabilities'
              @> jsonb_build_object('operations', jsonb_build_array($1::text))
      AND s.registration -> 'endpoints' ? $1::text
)
SELECT o.tool_id
FROM offering o
LEFT JOIN lifetime l ON l.tool_id = o.tool_id
LEFT JOIN tool_registrations cur
       ON cur.tool_id = o.tool_id AND cur.registered_at <= $2::timestamptz
WHERE CASE
        WHEN cur.tool_id IS NOT NULL
             AND $2::timestamptz >= COALESCE(cur.last_heartbeat, cur.registered_at)
        THEN $2::timestamptz < COALESCE(cur.last_heartbeat, cur.registered_at)
                               + make_interval(secs => $3::float8)
        ELSE {{ last_verdict(o.tool_id, l, 'stale', 'healthy', $2::timestamptz) }} = 'healthy'
      END
  AND {{ last_verdict(o.tool_id, l, 'critical', 'passing', $2::timestamptz) }} = 'passing'
ORDER BY o.tool_id
