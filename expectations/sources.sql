SELECT s.event_id,
       s.position,
       count(*) OVER (PARTITION BY s.event_id, s.position) AS key_occurrences,
       e.event_id IS NOT NULL AS event_exists,
       s.url,
       s.host
FROM checked_sources s
LEFT JOIN (SELECT event_id FROM events) e ON e.event_id = s.event_id
