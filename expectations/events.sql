-- The events table's keys plus derived checks, computed over the whole table.
SELECT e.event_id,
       count(*) OVER (PARTITION BY e.event_id) AS event_id_occurrences,
       e.event_date,
       e.event_date BETWEEN DATE '1900-01-01' AND (SELECT max_date FROM run_facts) AS date_in_range,
       e.source_count,
       coalesce(s.n, 0) AS source_rows,
       e.related_count,
       coalesce(r.n, 0) AS related_rows,
       e.cover_image_url
FROM checked_events e
LEFT JOIN (SELECT event_id, count(*) AS n FROM checked_sources GROUP BY event_id) s ON s.event_id = e.event_id
LEFT JOIN (SELECT event_id, count(*) AS n FROM checked_relations GROUP BY event_id) r ON r.event_id = e.event_id
