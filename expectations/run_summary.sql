-- One row: run-level totals that no single table can check. Each `totals_<table>` is the sum
-- of its parts' totals (the suite's `totals`), which each publication keeps per part: an
-- incremental run counts the rows of the parts it rewrote, not every table whole.
SELECT (SELECT files_seen FROM run_facts) AS files_seen,
       f.files_rows,
       f.status_rows,
       f.parsed_files,
       e.events,
       coalesce(f.rejected_files / nullif(f.files_rows, 0), 0.0) AS share_rejected,
       -- the same share, only for archives large enough for 5% to mean something
       CASE WHEN f.files_rows >= 1000 THEN f.rejected_files / f.files_rows END AS share_rejected_large,
       coalesce(r.resolved / nullif(r.relations, 0), 1.0) AS share_resolved,
       coalesce(e.empty_summaries / nullif(e.events, 0), 0.0) AS share_empty_summaries
FROM totals_files f, totals_events e, totals_relations r
