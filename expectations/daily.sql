-- Events per day, for the "unusual volume" warning.
SELECT event_date, count(*) AS events FROM events GROUP BY event_date
