"""Stage 1, extract: list the archive's `*.md` files (discover.py, walk.py)."""
