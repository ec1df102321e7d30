SELECT f.file_path,
       count(*) OVER (PARTITION BY f.file_path) AS file_path_occurrences,
       f.status,
       f.reason,
       (f.status = 'parsed') = (f.reason IS NULL) AS reason_present_iff_not_parsed,
       (f.status IN ('parsed', 'duplicate')) = (f.event_id IS NOT NULL) AS event_id_present_iff_event
FROM checked_files f
