-- Tags specific enough to join events into a storyline (pipeline/storylines.py): the events a
-- tag reaches (those naming it in their Related items and those such an item points at, in
-- the archive or not; an event id starts with its date) number at most $max_events and lie
-- within $max_span_days days.
WITH reach AS (
    SELECT tag_id, event_id FROM event_tags
    UNION
    SELECT tag_id, related_event_id FROM relation_tags
)
SELECT tag_id
FROM reach
GROUP BY tag_id
HAVING count(*) <= $max_events
   AND CAST(left(max(event_id), 10) AS DATE) - CAST(left(min(event_id), 10) AS DATE) <= $max_span_days
