-- 4. Related events referenced but missing from the archive
SELECT related_date, left(related_title, 60) AS related_title, count(*) AS referenced_by
FROM relations WHERE NOT resolved GROUP BY ALL ORDER BY referenced_by DESC, related_date LIMIT 3;
