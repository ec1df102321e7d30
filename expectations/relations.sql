SELECT r.event_id,
       r.position,
       count(*) OVER (PARTITION BY r.event_id, r.position) AS key_occurrences,
       e.event_id IS NOT NULL AS event_exists,
       r.related_event_id,
       r.related_date,
       r.resolved,
       t.event_id IS NOT NULL AS target_exists
FROM checked_relations r
LEFT JOIN (SELECT event_id FROM events) e ON e.event_id = r.event_id
LEFT JOIN (SELECT event_id FROM events) t ON t.event_id = r.related_event_id
