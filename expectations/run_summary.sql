-- One row: run-level totals that no single table can check. Each table is read once (a
-- subquery per total read `files` four times: 50 ms of a one-file batch at 110k events).
WITH f AS (
    SELECT count(*) AS files_rows,
           count(*) FILTER (WHERE status IN ('parsed', 'rejected', 'skipped', 'duplicate')) AS status_rows,
           count(*) FILTER (WHERE status = 'parsed') AS parsed_files,
           avg(CASE WHEN status = 'rejected' THEN 1.0 ELSE 0.0 END) AS share_rejected
    FROM files
), e AS (
    SELECT count(*) AS events, avg(CASE WHEN summary = '' THEN 1.0 ELSE 0.0 END) AS share_empty_summaries
    FROM events
), r AS (
    SELECT avg(CASE WHEN resolved THEN 1.0 ELSE 0.0 END) AS share_resolved FROM relations
)
SELECT (SELECT files_seen FROM run_facts) AS files_seen,
       f.files_rows,
       f.status_rows,
       f.parsed_files,
       e.events,
       coalesce(f.share_rejected, 0.0) AS share_rejected,
       -- the same share, only for archives large enough for 5% to mean something
       CASE WHEN f.files_rows >= 1000 THEN f.share_rejected END AS share_rejected_large,
       coalesce(r.share_resolved, 1.0) AS share_resolved,
       coalesce(e.share_empty_summaries, 0.0) AS share_empty_summaries
FROM f, e, r
