-- Title lengths of the events under test. A share of the whole (`mostly`), so it is checked
-- over whole parts even in an incremental run: apart from the events suite, whose row checks
-- then cover only the rows the run recomputed (at 1M events, a one-file run checked a year
-- of events, 45,000 rows, with every events expectation because of this one).
SELECT event_id, length(title) AS title_length
FROM checked_events
