-- One row per tag. name: the most frequent spelling among context occurrences in kept events
-- (ties: smallest in code-point order); counts and dates over the events that name the tag.
WITH spellings AS (
    SELECT c.tag_id, c.context AS name, count(*) AS uses
    FROM stg_relation_contexts c
    JOIN events e ON e.file_path = c.file_path
    GROUP BY c.tag_id, c.context
),
names AS (
    SELECT tag_id, name
    FROM spellings
    QUALIFY row_number() OVER (PARTITION BY tag_id ORDER BY uses DESC, name) = 1
)
SELECT n.tag_id,
       n.name,
       CAST(count(*) AS INTEGER) AS event_count,
       min(e.event_date) AS first_date,
       max(e.event_date) AS last_date
FROM names n
JOIN event_tags et ON et.tag_id = n.tag_id
JOIN events e ON e.event_id = et.event_id
GROUP BY n.tag_id, n.name
ORDER BY n.tag_id
