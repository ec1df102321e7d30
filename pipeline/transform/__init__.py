"""Stage 3, transform: the published tables from the staged rows, with DuckDB (normalize.py,
models in sql/), incrementally (incremental.py), storylines (storylines.py)."""
