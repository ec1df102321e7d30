-- Related items of kept events; resolved when the target event is in this publication
-- (`event_ids`: event ids of the new publication, every one these items point at among them,
-- not just the ones recomputed).
SELECT e.event_id,
       r.position,
       r.related_event_id,
       r.related_title,
       r.related_date,
       r.related_event_id IN (SELECT event_id FROM event_ids) AS resolved,
       CAST(r.related_date - e.event_date AS INTEGER) AS days_apart
FROM stg_relations r
JOIN events e ON e.file_path = r.file_path
