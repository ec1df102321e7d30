-- One row per input *.md file. A parsed file that lost its event_id to an earlier path is a duplicate.
SELECT f.file_path,
       f.content_sha256,
       f.bytes,
       CASE WHEN f.status = 'parsed' AND e.file_path IS NULL THEN 'duplicate' ELSE f.status END AS status,
       CASE WHEN f.status = 'parsed' AND e.file_path IS NULL THEN 'duplicate_event_id' ELSE f.reason END AS reason,
       f.event_id,
       CASE WHEN f.status = 'parsed' AND e.file_path IS NULL THEN winner.file_path END AS duplicate_of,
       f.detail
FROM stg_files f
LEFT JOIN events e ON e.file_path = f.file_path
LEFT JOIN events winner ON winner.event_id = f.event_id AND e.file_path IS NULL
ORDER BY f.file_path
