-- The countries each kept event mentions (contract section 5), with where the first mention is:
-- the places the parse listed for the event's winning file, which the events model carries
-- (`places`, not published; normalize.CARRIED).
SELECT event_id, unnest(places, recursive := true)
FROM fresh_events
