SELECT c.country_code,
       count(*) OVER (PARTITION BY c.country_code) AS key_occurrences,
       c.alpha_3,
       c.name,
       c.region,
       (SELECT count(*) FROM countries) AS rows
FROM countries c
