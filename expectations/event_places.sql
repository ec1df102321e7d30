-- Keys are checked on the rows under test: a key's rows all share a part (its event's year),
-- and so does its event, hence `checked_events` (not all of `events`) and a GROUP BY of the
-- duplicated keys (not a window over every row): at 1M events the frame took 1.0 s, not 2.2-2.9.
WITH duplicated AS (
    SELECT event_id, country_code, count(*) AS occurrences
    FROM checked_event_places
    GROUP BY ALL
    HAVING count(*) > 1
)
SELECT p.event_id,
       p.country_code,
       p.found_in,
       coalesce(d.occurrences, 1) AS key_occurrences,
       e.event_id IS NOT NULL AS event_exists,
       c.country_code IS NOT NULL AS country_exists
FROM checked_event_places p
LEFT JOIN duplicated d
       ON d.event_id IS NOT DISTINCT FROM p.event_id AND d.country_code IS NOT DISTINCT FROM p.country_code
LEFT JOIN (SELECT event_id FROM checked_events) e ON e.event_id = p.event_id
LEFT JOIN (SELECT country_code FROM countries) c ON c.country_code = p.country_code
