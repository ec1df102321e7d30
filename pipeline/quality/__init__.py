"""Stage 4, quality: Great Expectations over a finished publication (validate.py), Data Docs
that work offline (datadocs.py)."""
