-- One row per pair of tags named by the same event (tag_a < tag_b by id): how many events name both.
SELECT a.tag_id AS tag_a,
       ta.name AS name_a,
       b.tag_id AS tag_b,
       tb.name AS name_b,
       count(*) AS events
FROM event_tags a
JOIN event_tags b ON b.event_id = a.event_id AND a.tag_id < b.tag_id
JOIN tags ta ON ta.tag_id = a.tag_id
JOIN tags tb ON tb.tag_id = b.tag_id
GROUP BY ALL
ORDER BY events DESC, tag_a, tag_b
