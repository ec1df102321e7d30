SELECT p.event_id,
       p.country_code,
       p.found_in,
       count(*) OVER (PARTITION BY p.event_id, p.country_code) AS key_occurrences,
       e.event_id IS NOT NULL AS event_exists,
       c.country_code IS NOT NULL AS country_exists
FROM checked_event_places p
LEFT JOIN (SELECT event_id FROM events) e ON e.event_id = p.event_id
LEFT JOIN (SELECT country_code FROM countries) c ON c.country_code = p.country_code
