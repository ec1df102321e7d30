SELECT rt.event_id,
       rt.related_event_id,
       rt.tag_id,
       count(*) OVER (PARTITION BY rt.event_id, rt.related_event_id, rt.tag_id) AS key_occurrences,
       e.event_id IS NOT NULL AS event_exists,
       t.tag_id IS NOT NULL AS tag_exists
FROM checked_relation_tags rt
LEFT JOIN (SELECT event_id FROM events) e ON e.event_id = rt.event_id
LEFT JOIN (SELECT tag_id FROM tags) t ON t.tag_id = rt.tag_id
