-- One row per day with at least one event: events, their source links and related items.
SELECT event_date,
       count(*) AS events,
       CAST(sum(source_count) AS BIGINT) AS sources,
       CAST(sum(related_count) AS BIGINT) AS related
FROM events
GROUP BY event_date
ORDER BY event_date
