-- 3. Publishers by registered domain, with the names they appear under
SELECT registered_domain, count(*) AS links, string_agg(DISTINCT name, ' | ' ORDER BY name) AS names
FROM sources GROUP BY registered_domain ORDER BY links DESC, registered_domain LIMIT 5;
