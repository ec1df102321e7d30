-- One row: run-level totals that no single table can check.
SELECT (SELECT files_seen FROM run_facts) AS files_seen,
       (SELECT count(*) FROM files) AS files_rows,
       (SELECT count(*) FROM files WHERE status IN ('parsed', 'rejected', 'skipped', 'duplicate')) AS status_rows,
       (SELECT count(*) FROM files WHERE status = 'parsed') AS parsed_files,
       (SELECT count(*) FROM events) AS events,
       coalesce((SELECT avg(CASE WHEN status = 'rejected' THEN 1.0 ELSE 0.0 END) FROM files), 0.0) AS share_rejected,
       -- the same share, only for archives large enough for 5% to mean something
       (SELECT avg(CASE WHEN status = 'rejected' THEN 1.0 ELSE 0.0 END) FROM files HAVING count(*) >= 1000) AS share_rejected_large,
       coalesce((SELECT avg(CASE WHEN resolved THEN 1.0 ELSE 0.0 END) FROM relations), 1.0) AS share_resolved,
       coalesce((SELECT avg(CASE WHEN summary = '' THEN 1.0 ELSE 0.0 END) FROM events), 0.0) AS share_empty_summaries
