SELECT t.tag_id,
       count(*) OVER (PARTITION BY t.tag_id) AS tag_id_occurrences,
       t.name,
       t.event_count,
       coalesce(et.n, 0) AS event_tag_rows,
       t.first_date <= t.last_date AS dates_ordered
FROM tags t
LEFT JOIN (SELECT tag_id, count(*) AS n FROM event_tags GROUP BY tag_id) et ON et.tag_id = t.tag_id
