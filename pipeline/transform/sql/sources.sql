-- Source links of kept events; position numbers accepted items from 1 without gaps.
SELECT e.event_id, s.position, s.name, s.url, s.host, s.registered_domain
FROM stg_sources s
JOIN events e ON e.file_path = s.file_path
