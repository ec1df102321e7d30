-- One row per pair of countries mentioned by the same event (country_a < country_b): how many events.
SELECT a.country_code AS country_a,
       ca.name AS name_a,
       b.country_code AS country_b,
       cb.name AS name_b,
       count(*) AS events
FROM event_places a
JOIN event_places b ON b.event_id = a.event_id AND a.country_code < b.country_code
JOIN countries ca ON ca.country_code = a.country_code
JOIN countries cb ON cb.country_code = b.country_code
GROUP BY ALL
ORDER BY events DESC, country_a, country_b
