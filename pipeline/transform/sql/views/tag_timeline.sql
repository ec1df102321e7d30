-- One row per (tag, month) in which at least one event names the tag.
SELECT et.tag_id,
       t.name,
       CAST(date_trunc('month', e.event_date) AS DATE) AS month,
       count(*) AS events
FROM event_tags et
JOIN events e ON e.event_id = et.event_id
JOIN tags t ON t.tag_id = et.tag_id
GROUP BY ALL
ORDER BY et.tag_id, month
