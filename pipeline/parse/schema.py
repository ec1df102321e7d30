"""Arrow schemas of the staging tables: the boundary between parsing and normalizing.

One set of staging files is written per batch of input files; the published
tables are derived from them by SQL (pipeline/transform/sql/).
"""

from __future__ import annotations

import pyarrow as pa

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
    "stg_places": pa.schema(
        [
            ("file_path", pa.string()),
            ("country_code", pa.string()),
            ("found_in", pa.string()),  # title | summary | context: the first place it was found
            ("matched", pa.string()),  # the words matched there
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
