-- One row per storyline. name: its most named specific tag; top_tags: up to five tags
-- (broad ones included) by how many of its events name them, ties by name.
WITH members AS (
    SELECT es.storyline_id, e.event_id, e.event_date
    FROM event_storylines es
    JOIN (SELECT event_id, event_date FROM events) e USING (event_id)
),
tag_uses AS (
    SELECT m.storyline_id,
           t.name,
           t.tag_id IN (SELECT tag_id FROM specific_tags) AS specific,
           count(*) AS uses
    FROM members m
    JOIN event_tags et USING (event_id)
    JOIN tags t USING (tag_id)
    GROUP BY ALL
),
described AS (
    SELECT storyline_id,
           (list(name ORDER BY uses DESC, name) FILTER (WHERE specific))[1] AS name,
           list(name ORDER BY uses DESC, name)[1:5] AS top_tags
    FROM tag_uses
    GROUP BY storyline_id
)
SELECT m.storyline_id,
       d.name,
       CAST(count(*) AS INTEGER) AS size,
       min(m.event_date) AS first_date,
       max(m.event_date) AS last_date,
       coalesce(d.top_tags, []) AS top_tags
FROM members m
LEFT JOIN described d USING (storyline_id)
GROUP BY m.storyline_id, d.name, d.top_tags
ORDER BY m.storyline_id
