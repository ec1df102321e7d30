"""`run`'s choice to start the validation process before it knows there is work."""

import os

from pipeline import cli
from pipeline.core.config import OutputLayout


def _parameters(**changed):
    return {"full_refresh": False, "changed_paths": None} | changed


def _published(tmp_path, manifest_bytes):
    layout = OutputLayout(tmp_path / "out")
    layout.publication("r1").mkdir(parents=True)
    os.symlink(layout.publication("r1"), layout.current)
    layout.manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(layout.manifest, "wb") as f:
        f.truncate(manifest_bytes)  # sparse: only its size is read
    return layout


def test_a_run_that_will_validate_starts_it(tmp_path):
    layout = OutputLayout(tmp_path / "out")  # nothing published yet
    assert cli.validation_ahead(_parameters(), layout)
    small = _published(tmp_path / "small", 1000)
    assert cli.validation_ahead(_parameters(full_refresh=True), small)
    assert cli.validation_ahead(_parameters(changed_paths=["news/a.md"]), small)


def test_a_small_archive_waits_to_know_a_large_one_does_not(tmp_path):
    assert not cli.validation_ahead(_parameters(), _published(tmp_path / "small", 15 * 2**20))
    assert cli.validation_ahead(_parameters(), _published(tmp_path / "large", cli.LARGE_MANIFEST_BYTES))


def test_a_publication_without_a_manifest_starts_it(tmp_path):
    layout = _published(tmp_path, 0)
    layout.manifest.unlink()
    assert cli.validation_ahead(_parameters(), layout)
