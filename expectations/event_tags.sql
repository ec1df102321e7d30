SELECT et.event_id,
       et.tag_id,
       count(*) OVER (PARTITION BY et.event_id, et.tag_id) AS key_occurrences,
       e.event_id IS NOT NULL AS event_exists,
       t.tag_id IS NOT NULL AS tag_exists
FROM checked_event_tags et
LEFT JOIN (SELECT event_id FROM events) e ON e.event_id = et.event_id
LEFT JOIN (SELECT tag_id FROM tags) t ON t.tag_id = et.tag_id
