-- One row per (country, month) in which at least one event mentions the country.
SELECT p.country_code,
       c.name,
       CAST(date_trunc('month', e.event_date) AS DATE) AS month,
       count(*) AS events
FROM event_places p
JOIN events e ON e.event_id = p.event_id
JOIN countries c ON c.country_code = p.country_code
GROUP BY ALL
ORDER BY p.country_code, month
