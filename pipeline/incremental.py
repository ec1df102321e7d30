"""Incremental builds: which files to parse, and which staged rows are live.

`state/manifest.parquet` records, per input file, its content hash, size,
mtime, status and the staging batch that holds its rows. A run parses only
files that are new or whose size or mtime changed (plus files rejected for a
reason that can change without an edit), and the new manifest names, per file,
the one batch whose rows count. Everything derived across files (duplicates,
`resolved`, tags) is recomputed by the SQL models from the live rows, so it
can never go stale. The new manifest replaces the old one only after a
successful publish; batches no manifest names are garbage.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.schema import STAGING

# A file rejected for one of these may be accepted later without any change to its bytes.
RETRY_REASONS = frozenset({"unreadable", "vanished", "not_a_regular_file", "date_out_of_range"})

MANIFEST_SCHEMA = pa.schema(
    [
        ("file_path", pa.string()),
        ("content_sha256", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("batch", pa.string()),
        ("event_id", pa.string()),  # as staged (NULL unless parsed): which files share an event
    ]
)
# Schema metadata: the run whose publication a manifest describes, and a fingerprint of the
# expectation suites that publication passed (other suites must check every row again).
PUBLICATION_KEY = b"publication"
EXPECTATIONS_KEY = b"expectations"
# ... and of the code that staged its rows: rows staged by other code are parsed again.
PARSER_KEY = b"parser"
# The modules that decide what a file's staged rows are (pipeline/<name>.py).
PARSER_MODULES = ("parse", "links", "ids", "domains", "stage", "schema")


class Origin(NamedTuple):
    """What a manifest's publication was built with; None for what a manifest does not say."""

    run_id: str | None
    expectations: str | None
    parser: str | None


def read_manifest(path: Path) -> pa.Table:
    """The manifest at `path`; empty (so every file is parsed again) if missing or of an older
    format."""
    if path.exists():
        table = pq.read_table(path)
        if set(MANIFEST_SCHEMA.names) <= set(table.column_names):
            return table.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)
    return MANIFEST_SCHEMA.empty_table()


def manifest_origin(path: Path) -> Origin:
    """The run whose publication the manifest at `path` describes, the fingerprint of the
    expectations it passed and of the parser that staged its rows; all None when the manifest
    is missing, unreadable or of an older format."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid):
        return Origin(None, None, None)
    if not set(MANIFEST_SCHEMA.names) <= set(schema.names):
        return Origin(None, None, None)
    metadata = schema.metadata or {}
    values = (metadata.get(key) for key in (PUBLICATION_KEY, EXPECTATIONS_KEY, PARSER_KEY))
    return Origin(*(value.decode() if value else None for value in values))


def fingerprint(directory: Path) -> str:
    """A hash of every suite file in `directory` (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.json")) + sorted(directory.glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def parser_fingerprint() -> str:
    """A hash of the parsing code (PARSER_MODULES) and of the public-suffix list's version.

    A new release may parse some file differently; without this, an incremental run would keep
    the old rows of every unchanged file, and only a full refresh would show the new ones."""
    import importlib

    import tldextract

    digest = hashlib.sha256()
    for name in PARSER_MODULES:
        module = importlib.import_module(f"pipeline.{name}")  # its file, be it .py or .pyc
        digest.update(name.encode() + b"\0" + Path(module.__file__).read_bytes() + b"\0")
    digest.update(f"tldextract {tldextract.__version__}".encode())
    return digest.hexdigest()


def same_parser(path: Path) -> bool:
    """Whether the rows the manifest at `path` names were staged by this parser."""
    return manifest_origin(path).parser == parser_fingerprint()


def plan(listing: pa.Table, previous: pa.Table) -> pa.Table:
    """The listing rows to (re)parse: new files, files whose size or mtime changed, files
    that could not be stat-ed, and files rejected for a reason worth retrying."""
    if previous.num_rows == 0:
        return listing
    known = previous.select(["file_path", "size", "mtime_ns", "reason"]).rename_columns(
        ["rel_path", "known_size", "known_mtime_ns", "known_reason"]
    )
    joined = listing.join(known, "rel_path", join_type="left outer")
    todo = pc.or_kleene(
        pc.or_kleene(
            pc.is_null(joined["known_size"]),
            pc.or_kleene(
                pc.not_equal(joined["size"], joined["known_size"]),
                pc.not_equal(joined["mtime_ns"], joined["known_mtime_ns"]),
            ),
        ),
        pc.or_kleene(
            pc.less(joined["size"], 0),
            pc.fill_null(pc.is_in(joined["known_reason"], pa.array(sorted(RETRY_REASONS))), False),
        ),
    )
    selected = joined.filter(pc.fill_null(todo, True)).select(listing.column_names).sort_by("rel_path")
    return selected.replace_schema_metadata(listing.schema.metadata)


def next_manifest(
    listing: pa.Table, parsed: pa.Table, previous: pa.Table, staging: Path, batches: Sequence[str]
) -> pa.Table:
    """Previous entries of unchanged files plus this run's staged files; vanished files drop out."""
    keep = pc.and_(
        pc.is_in(previous["file_path"], listing["rel_path"]),
        pc.invert(pc.is_in(previous["file_path"], parsed["rel_path"])),
    )
    kept = previous.filter(keep).replace_schema_metadata(None)
    fresh = [staging / f"stg_files-{b}.parquet" for b in batches]
    if not fresh:
        return kept
    staged = pq.read_table(
        fresh, columns=["file_path", "content_sha256", "status", "reason", "batch", "event_id"]
    )
    if staged.num_rows == 0:
        return kept
    stat = parsed.select(["rel_path", "size", "mtime_ns"]).rename_columns(["file_path", "size", "mtime_ns"])
    staged = staged.join(stat, "file_path", join_type="left outer")
    return pa.concat_tables([kept, staged.select(MANIFEST_SCHEMA.names).cast(MANIFEST_SCHEMA)])


def write_manifest(table: pa.Table, path: Path, run_id: str, expectations: str) -> None:
    """Write the manifest for the publication of `run_id`, validated by suites `expectations`,
    its rows staged by this parser."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    metadata = {
        PUBLICATION_KEY: run_id.encode(),
        EXPECTATIONS_KEY: expectations.encode(),
        PARSER_KEY: parser_fingerprint().encode(),
    }
    pq.write_table(table.replace_schema_metadata(metadata), tmp)
    os.replace(tmp, path)


def collect_garbage(staging: Path, live_batches: set[str]) -> int:
    """Delete staging files of batches no manifest names (failed or crashed runs, replaced files)."""
    removed = 0
    if not staging.is_dir():
        return 0
    for path in staging.iterdir():
        table, _, rest = path.name.partition("-")
        batch = rest.removesuffix(".parquet").removesuffix(".tmp")
        if table in STAGING and batch not in live_batches:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def live_batches(manifest: pa.Table) -> set[str]:
    return set(manifest["batch"].unique().to_pylist()) if manifest.num_rows else set()


def committed_batches(path: Path) -> set[str]:
    """The batches the manifest at `path` names (reads one column)."""
    if not path.exists():
        return set()
    return set(pq.read_table(path, columns=["batch"])["batch"].unique().to_pylist())
