SELECT es.event_id,
       count(*) OVER (PARTITION BY es.event_id) AS event_id_occurrences,
       es.storyline_id,
       e.event_id IS NOT NULL AS event_exists,
       s.storyline_id IS NOT NULL AS storyline_exists
FROM checked_event_storylines es
LEFT JOIN (SELECT event_id FROM events) e ON e.event_id = es.event_id
LEFT JOIN (SELECT storyline_id FROM storylines) s ON s.storyline_id = es.storyline_id
