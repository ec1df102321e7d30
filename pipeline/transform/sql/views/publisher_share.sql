-- One row per (publisher, year): its links that year and its share of all links that year.
SELECT year,
       registered_domain,
       links,
       links / sum(links) OVER (PARTITION BY year) AS share
FROM (
    SELECT CAST(year(e.event_date) AS INTEGER) AS year, s.registered_domain, count(*) AS links
    FROM sources s
    JOIN events e ON e.event_id = s.event_id
    GROUP BY ALL
)
ORDER BY year, links DESC, registered_domain
