SELECT q.file_path,
       q.section,
       q.reason,
       f.file_path IS NOT NULL AS file_is_parsed
FROM checked_quarantine q
LEFT JOIN (SELECT file_path FROM files WHERE status = 'parsed') f ON f.file_path = q.file_path
