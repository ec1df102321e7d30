"""Stage 2, parse: read and parse documents into staging Parquet (stage.py), by the contract's
rules (document.py, links.py, ids.py, domains.py; staging schemas in schema.py)."""
