-- One row per tag. name: the most frequent spelling among context occurrences in kept events
-- (ties: smallest in code-point order); counts and dates over the events that name the tag.
-- Reads the written parts of tag_spellings, event_tags and events (every event, not a scope).
WITH spellings AS (
    SELECT tag_id, name, sum(uses) AS uses
    FROM tag_spellings
    GROUP BY tag_id, name
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
JOIN (SELECT event_id, event_date FROM events) e ON e.event_id = et.event_id
GROUP BY n.tag_id, n.name
ORDER BY n.tag_id
