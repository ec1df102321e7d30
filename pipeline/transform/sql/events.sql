-- One row per event. Two files with the same event_id: the first relative path in
-- code-point order wins (DuckDB compares VARCHAR bytewise, which is code-point order for UTF-8).
-- `places` is carried for the event_places model, not published (normalize.CARRIED).
SELECT event_id, event_date, title, summary, slug, cover_image_url,
       source_count, related_count, file_path, content_sha256, places
FROM stg_events
QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY file_path) = 1
