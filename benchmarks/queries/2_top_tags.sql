-- 2. The most-used contexts (tags)
SELECT name, event_count, first_date, last_date FROM tags ORDER BY event_count DESC, name LIMIT 5;
