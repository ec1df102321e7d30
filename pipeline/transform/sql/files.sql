-- One row per input *.md file. A parsed file whose event_id was won by another path is a duplicate;
-- one join suffices, since every parsed file's event_id is in events (it won, or it lost).
SELECT f.file_path,
       f.content_sha256,
       f.bytes,
       CASE WHEN w.file_path <> f.file_path THEN 'duplicate' ELSE f.status END AS status,
       CASE WHEN w.file_path <> f.file_path THEN 'duplicate_event_id' ELSE f.reason END AS reason,
       f.event_id,
       CASE WHEN w.file_path <> f.file_path THEN w.file_path END AS duplicate_of,
       f.detail
FROM stg_files f
LEFT JOIN (SELECT event_id, file_path FROM events) w ON f.status = 'parsed' AND w.event_id = f.event_id
