"""Input and output locations given as paths or fsspec URLs, resolved in one place.

`file://` URLs are local paths. Any other protocol fsspec knows (`s3://` with s3fs
installed, `gcs://`, `memory://` in tests) is read through fsspec, so Dask workers on
other machines read the archive from shared storage. The output must be a filesystem
with atomic rename (local disk, NFS, EFS): a publication is made current by renaming
the catalog and the `current` link, which object stores cannot do atomically, so an
`s3://` output is refused with that reason rather than published half-way.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class LocationError(ValueError):
    """A location the pipeline cannot use, with the reason."""


def is_url(text: str) -> bool:
    return bool(_URL.match(text))


def _file_url_path(text: str) -> Path:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise LocationError(f"{text}: a file:// URL must name a local path (file:///path)")
    return Path(unquote(parts.path))


def input_location(text: str | Path) -> Path | str:
    """A local input folder as an absolute Path, or a remote fsspec URL as a string."""
    text = str(text)
    if not is_url(text):
        return Path(text).resolve()
    if text.lower().startswith("file://"):
        return _file_url_path(text).resolve()
    import fsspec

    protocol = text.split("://", 1)[0].lower()
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        raise LocationError(f"{text}: no fsspec filesystem for {protocol}:// ({exc})") from exc
    return text.rstrip("/")


def output_location(text: str | Path) -> Path:
    """The output folder as an absolute local (or mounted) path."""
    text = str(text)
    if not is_url(text):
        return Path(text).resolve()
    if text.lower().startswith("file://"):
        return _file_url_path(text).resolve()
    raise LocationError(
        f"{text}: the output must be a filesystem with atomic rename (a local disk, or NFS/EFS "
        "shared with the Dask workers); publishing swaps the catalog by rename, which object "
        "stores do not do atomically. The input may be an s3:// URL."
    )


def modified_ns(info: dict) -> int:
    """A file's modification time from an fsspec `info` entry (its key differs by filesystem)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            return int(value.timestamp() * 1e9)
        if isinstance(value, str):
            try:
                return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
            except ValueError:
                continue
        return int(float(value) * 1e9)
    return -1
