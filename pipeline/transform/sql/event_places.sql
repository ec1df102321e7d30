-- The countries each kept event mentions (contract section 5), with where the first mention is.
SELECT e.event_id, p.country_code, p.found_in, p.matched
FROM stg_places p
JOIN events e ON e.file_path = p.file_path
