-- 1. Events and sources per year
SELECT year(event_date) AS year, count(*) AS events, sum(source_count) AS sources
FROM events GROUP BY year ORDER BY year DESC LIMIT 5;
