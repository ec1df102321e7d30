-- As event_places.sql: keys and their events are checked within the rows under test.
WITH duplicated AS (
    SELECT event_id, tag_id, count(*) AS occurrences
    FROM checked_event_tags
    GROUP BY ALL
    HAVING count(*) > 1
)
SELECT et.event_id,
       et.tag_id,
       coalesce(d.occurrences, 1) AS key_occurrences,
       e.event_id IS NOT NULL AS event_exists,
       t.tag_id IS NOT NULL AS tag_exists
FROM checked_event_tags et
LEFT JOIN duplicated d
       ON d.event_id IS NOT DISTINCT FROM et.event_id AND d.tag_id IS NOT DISTINCT FROM et.tag_id
LEFT JOIN (SELECT event_id FROM checked_events) e ON e.event_id = et.event_id
LEFT JOIN (SELECT tag_id FROM tags) t ON t.tag_id = et.tag_id
