-- 7. Publisher share per year: each year's three most-linked registered domains and their share of links
SELECT year, registered_domain, links, round(links / sum(links) OVER (PARTITION BY year), 4) AS share
FROM (
    SELECT year(e.event_date) AS year, s.registered_domain, count(*) AS links
    FROM sources s JOIN events e ON e.event_id = s.event_id
    GROUP BY ALL
)
QUALIFY row_number() OVER (PARTITION BY year ORDER BY links DESC, registered_domain) <= 3
ORDER BY year DESC, links DESC, registered_domain;
