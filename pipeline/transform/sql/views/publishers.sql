-- One row per publisher (registered domain): the names and hosts it appears under, and counts.
SELECT s.registered_domain,
       list(DISTINCT s.name ORDER BY s.name) AS names,
       list(DISTINCT s.host ORDER BY s.host) AS hosts,
       count(*) AS links,
       count(DISTINCT s.event_id) AS events,
       min(e.event_date) AS first_date,
       max(e.event_date) AS last_date
FROM sources s
JOIN events e ON e.event_id = s.event_id
GROUP BY s.registered_domain
ORDER BY s.registered_domain
