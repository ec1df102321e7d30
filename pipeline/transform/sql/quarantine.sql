-- List items of kept events that were not accepted, with the line as written.
SELECT q.file_path, q.section, q.raw, q.reason, q.line_number, e.event_id
FROM stg_quarantine q
JOIN events e ON e.file_path = q.file_path
ORDER BY q.file_path, q.line_number
