-- Internal (not in the catalog): how often each event writes each spelling of a tag, so that
-- `tags.name` can be recomputed from the stored parts without re-reading every staged row.
SELECT e.event_id, c.tag_id, c.context AS name, CAST(count(*) AS INTEGER) AS uses
FROM stg_relation_contexts c
JOIN events e ON e.file_path = c.file_path
GROUP BY ALL
ORDER BY ALL
