-- (relation, context) pairs, one row per distinct tag of a related item.
SELECT DISTINCT e.event_id, c.related_event_id, c.tag_id
FROM stg_relation_contexts c
JOIN events e ON e.file_path = c.file_path
ORDER BY ALL
