-- The tags named in an event's own accepted Related items.
SELECT DISTINCT event_id, tag_id
FROM relation_tags
ORDER BY ALL
