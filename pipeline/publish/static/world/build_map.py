"""Build world-110m.json, the run report's world map, from Natural Earth 1:110m admin-0
countries (public domain), as bundled by geopandas 0.14 (`naturalearth_lowres`).

Not run by the pipeline: the JSON it writes is committed. To rebuild (needs network once):

    pip download --no-deps geopandas==0.14.4 pyshp==3.1.6 -d /tmp/ne
    cd /tmp/ne && unzip -o -q geopandas-0.14.4-py3-none-any.whl 'geopandas/datasets/naturalearth_lowres/*' \
        && unzip -o -q pyshp-3.1.6-py3-none-any.whl -d pyshp
    PYTHONPATH=/tmp/ne/pyshp python pipeline/publish/static/world/build_map.py \
        /tmp/ne/geopandas/datasets/naturalearth_lowres/naturalearth_lowres

Equirectangular projection into a 960 x 480 box; points closer than 0.6 px to the last kept
one are dropped (the map is drawn at most 960 px wide), coordinates rounded to 0.1 px.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

WIDTH, HEIGHT, TOLERANCE = 960, 480, 0.6


def project(lon: float, lat: float) -> tuple[float, float]:
    return (lon + 180.0) * WIDTH / 360.0, (90.0 - lat) * HEIGHT / 180.0


def ring_path(points: list[tuple[float, float]]) -> str:
    kept: list[tuple[float, float]] = []
    for lon, lat in points:
        x, y = project(lon, lat)
        if kept and abs(x - kept[-1][0]) < TOLERANCE and abs(y - kept[-1][1]) < TOLERANCE:
            continue
        kept.append((x, y))
    if len(kept) < 3:
        return ""
    return "M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in kept) + "Z"


def main(source: str) -> None:
    import pycountry
    import shapefile  # pyshp

    reader = shapefile.Reader(source)
    countries: dict[str, str] = {}
    for shape, record in zip(reader.shapes(), reader.records(), strict=True):
        iso3 = {"CYN": "CYP", "SOL": "SOM"}.get(record["iso_a3"], record["iso_a3"])  # drawn with CY, SO
        if iso3 == "-99" and record["name"] == "Kosovo":
            code = "XK"
        else:
            found = pycountry.countries.get(alpha_3=iso3)
            if found is None:
                print(f"skipped: {record['name']} ({iso3})", file=sys.stderr)
                continue
            code = found.alpha_2
        parts = list(shape.parts) + [len(shape.points)]
        rings = [ring_path(shape.points[a:b]) for a, b in zip(parts, parts[1:], strict=False)]
        countries[code] = countries.get(code, "") + "".join(r for r in rings if r)
    target = Path(__file__).with_name("world-110m.json")
    target.write_text(
        json.dumps(
            {
                "source": "Natural Earth 1:110m admin-0 countries (public domain), via geopandas 0.14.4 naturalearth_lowres",
                "width": WIDTH,
                "height": HEIGHT,
                "countries": dict(sorted(countries.items())),
            },
            separators=(",", ":"),
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"{len(countries)} countries, {target.stat().st_size:,} bytes -> {target}")


if __name__ == "__main__":
    main(sys.argv[1])
