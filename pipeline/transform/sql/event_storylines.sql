-- One row per event in a storyline: the connected groups of two or more events
-- (`event_components`, from pipeline/storylines.py). The id is derived from the group's
-- earliest event id, so a storyline keeps its id while its first event stays.
WITH sized AS (
    SELECT event_id,
           component,
           count(*) OVER (PARTITION BY component) AS size,
           min(event_id) OVER (PARTITION BY component) AS first_event_id
    FROM event_components
)
SELECT event_id, substr(md5(first_event_id), 1, 16) AS storyline_id
FROM sized
WHERE size >= 2
ORDER BY event_id
