-- Queries of ChangeFeed. Only events of transactions older than every
-- transaction still running are read (txid < xmin): those can no longer be
-- joined by an event that sorts before them.
--
-- Every ORDER BY names the table's column (e.txid), never the bare name: the
-- select list turns txid into text under the same name, and an unqualified
-- ORDER BY txid would sort that text ("1000" before "999").

-- name: changes_since
SELECT txid::text AS txid, seq, occurred_at, kind, tool_id, registration_id, registration, reason
FROM tool_registration_events e
WHERE (e.txid, e.seq) > ($1::text::xid8, $2::bigint)
  AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.txid, e.seq
LIMIT $3

-- name: horizon
SELECT pruned_txid::text AS txid, pruned_seq AS seq FROM tool_registration_feed_state

-- name: head
SELECT e.txid::text AS txid, e.seq FROM tool_registration_events e
WHERE e.txid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY e.txid DESC, e.seq DESC
LIMIT 1

-- name: prune
WITH gone AS (
    DELETE FROM tool_registration_events
    WHERE occurred_at < now() - make_interval(secs => $1::float8)
      AND txid < pg_snapshot_xmin(pg_current_snapshot())
    RETURNING txid, seq
), last AS (
    SELECT txid, seq FROM gone ORDER BY txid DESC, seq DESC LIMIT 1
), moved AS (
    UPDATE tool_registration_feed_state s
    SET pruned_txid = last.txid, pruned_seq = last.seq
    FROM last
    WHERE (s.pruned_txid, s.pruned_seq) < (last.txid, last.seq)
)
SELECT count(*) FROM gone

-- name: mark_follower
-- Names a follower's connection in pg_stat_activity (reset when the pool takes it back).
SELECT set_config('application_name', 'omninode-bridge change feed', false)
