"""Arrow schemas of the staging tables: the boundary between parsing and normalizing.

One set of staging files is written per batch of input files; the published
tables are derived from them by SQL (pipeline/transform/sql/).
"""

from __future__ import annotations

import pyarrow as pa

# A country an event mentions (contract section 5), with the evidence: a list of these is the
# event's `places` in stg_events, so that `event_places` needs no join back to its event (a
# table of its own, keyed by file path, cost a hash join of 3M rows on 60-character paths
# and those paths' bytes in every batch).
PLACE = pa.struct(
    [
        ("country_code", pa.string()),
        ("found_in", pa.string()),  # title | summary | context: the first place it was found
        ("matched", pa.string()),  # the words matched there
    ]
)

STAGING: dict[str, pa.Schema] = {
    "stg_files": pa.schema(
        [
            ("file_path", pa.string()),
            ("content_sha256", pa.string()),
            ("bytes", pa.int64()),
            ("status", pa.string()),  # parsed | rejected | skipped (duplicates are decided later)
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("event_id", pa.string()),
        ]
    ),
    "stg_events": pa.schema(
        [
            ("file_path", pa.string()),
            ("event_id", pa.string()),
            ("event_date", pa.date32()),
            ("title", pa.string()),
            ("summary", pa.string()),
            ("slug", pa.string()),
            ("cover_image_url", pa.string()),
            ("source_count", pa.int32()),
            ("related_count", pa.int32()),
            ("content_sha256", pa.string()),
            ("places", pa.list_(PLACE)),  # read by the event_places model, not published
        ]
    ),
    "stg_sources": pa.schema(
        [
            ("file_path", pa.string()),
            ("position", pa.int32()),
            ("name", pa.string()),
            ("url", pa.string()),
            ("host", pa.string()),
            ("registered_domain", pa.string()),
        ]
    ),
    "stg_relations": pa.schema(
        [
            ("file_path", pa.string()),
            ("position", pa.int32()),
            ("related_event_id", pa.string()),
            ("related_title", pa.string()),
            ("related_date", pa.date32()),
        ]
    ),
    "stg_relation_contexts": pa.schema(
        [
            ("file_path", pa.string()),
            ("position", pa.int32()),
            ("related_event_id", pa.string()),
            ("context", pa.string()),  # as written, trimmed
            ("tag_id", pa.string()),
        ]
    ),
    "stg_quarantine": pa.schema(
        [
            ("file_path", pa.string()),
            ("section", pa.string()),
            ("line_number", pa.int32()),
            ("raw", pa.string()),
            ("reason", pa.string()),
        ]
    ),
}
