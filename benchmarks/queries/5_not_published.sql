-- 5. What did not make it into events, and why
SELECT status, reason, count(*) AS files FROM files WHERE status <> 'parsed' GROUP BY ALL ORDER BY status, reason;
