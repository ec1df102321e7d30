SELECT s.storyline_id,
       count(*) OVER (PARTITION BY s.storyline_id) AS storyline_id_occurrences,
       s.name,
       s.size,
       s.size AS size_for_warning,  -- GX keeps one expectation per (type, column)
       coalesce(m.n, 0) AS member_rows,
       m.first_date IS NOT DISTINCT FROM s.first_date AND m.last_date IS NOT DISTINCT FROM s.last_date AS dates_match
FROM storylines s
LEFT JOIN (
    SELECT es.storyline_id, count(*) AS n, min(e.event_date) AS first_date, max(e.event_date) AS last_date
    FROM event_storylines es
    LEFT JOIN (SELECT event_id, event_date FROM events) e ON e.event_id = es.event_id
    GROUP BY es.storyline_id
) m ON m.storyline_id = s.storyline_id
