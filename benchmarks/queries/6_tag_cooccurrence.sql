-- 6. Tag co-occurrence: the pairs of contexts most often named by the same event
SELECT ta.name AS tag_a, tb.name AS tag_b, p.events
FROM (
    SELECT a.tag_id AS tag_a, b.tag_id AS tag_b, count(*) AS events
    FROM event_tags a JOIN event_tags b ON a.event_id = b.event_id AND a.tag_id < b.tag_id
    GROUP BY ALL ORDER BY events DESC, tag_a, tag_b LIMIT 10
) p
JOIN tags ta ON ta.tag_id = p.tag_a
JOIN tags tb ON tb.tag_id = p.tag_b
ORDER BY p.events DESC, tag_a, tag_b;
