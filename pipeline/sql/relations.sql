-- Related items of kept events; resolved when the target event is in this publication.
SELECT e.event_id,
       r.position,
       r.related_event_id,
       r.related_title,
       r.related_date,
       t.event_id IS NOT NULL AS resolved,
       CAST(r.related_date - e.event_date AS INTEGER) AS days_apart
FROM stg_relations r
JOIN events e ON e.file_path = r.file_path
LEFT JOIN (SELECT event_id FROM events) t ON t.event_id = r.related_event_id
ORDER BY e.event_id, r.position
