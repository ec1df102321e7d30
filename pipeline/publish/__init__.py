"""Stage 5, publish: make a publication current and keep rollback points (catalog.py,
registry.py), the run log (runs.py), and what users read from it: the data dictionary,
the run report, status, exports."""
