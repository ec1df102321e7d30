-- The largest connected groups of related events (storylines, grouped at build time) with their events' sources
SELECT s.storyline_id, s.name, s.size, s.first_date, s.last_date, sum(e.source_count) AS sources
FROM storylines s
JOIN event_storylines es USING (storyline_id)
JOIN events e USING (event_id)
GROUP BY ALL
ORDER BY s.size DESC, s.storyline_id
LIMIT 20
