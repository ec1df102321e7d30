-- The links storylines are made of (pipeline/storylines.py): an event and a specific tag it
-- names in its own Related items, or that a Related item pointing at it (resolved) names.
SELECT event_id, tag_id
FROM event_tags
SEMI JOIN specific_tags USING (tag_id)
UNION
SELECT related_event_id AS event_id, tag_id
FROM relation_tags
SEMI JOIN specific_tags USING (tag_id)
WHERE related_event_id IN (SELECT event_id FROM events)
