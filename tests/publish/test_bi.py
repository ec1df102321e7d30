"""BI ingestion: SQLAlchemy with duckdb-engine (how Superset and Metabase connect) reads every table
and view; `export` writes snapshots that work without the output folder."""

import shutil
import subprocess
import sys

import duckdb
import pytest

from pipeline.core.tables import PUBLISHED, VIEWS
from tests.conftest import REPO

pytestmark = pytest.mark.flow


def counts_in(path: str) -> dict[str, int]:
    con = duckdb.connect(path, read_only=True)
    try:
        return {
            name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in (*PUBLISHED, *VIEWS)
        }
    finally:
        con.close()


def test_sqlalchemy_with_duckdb_engine_reads_every_table_and_view(sample_build):
    import sqlalchemy as sa

    engine = sa.create_engine(f"duckdb:///{sample_build['catalog']}", connect_args={"read_only": True})
    try:
        inspector = sa.inspect(engine)
        names = set(inspector.get_view_names()) | set(inspector.get_table_names())
        assert set(PUBLISHED) | set(VIEWS) <= names
        with engine.connect() as conn:
            for name in (*PUBLISHED, *VIEWS):
                columns = [c["name"] for c in inspector.get_columns(name)]
                rows = conn.execute(sa.text(f"SELECT * FROM {name}")).fetchall()
                assert columns and rows and len(rows[0]) == len(columns), name
            assert conn.execute(sa.text("SELECT count(*) FROM events")).scalar() == 32
    finally:
        engine.dispose()


def export(output, fmt, target) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "export",
            "--output",
            str(output),
            "--format",
            fmt,
            "--to",
            str(target),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_the_duckdb_export_still_works_when_the_output_folder_is_gone(sample_build, tmp_path):
    output = tmp_path / "output"
    shutil.copytree(
        sample_build["catalog"].rsplit("/", 1)[0],
        output,
        symlinks=True,
        ignore=shutil.ignore_patterns(".lock"),
    )
    expected = counts_in(sample_build["catalog"])
    done = export(output, "duckdb", tmp_path / "snapshot")
    assert done.returncode == 0, done.stderr
    shutil.rmtree(output)  # the snapshot must not refer to it
    assert counts_in(str(tmp_path / "snapshot" / "news.duckdb")) == expected
    con = duckdb.connect(str(tmp_path / "snapshot" / "news.duckdb"), read_only=True)
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    con.close()
    assert {kinds[t] for t in PUBLISHED} == {"BASE TABLE"} and {kinds[v] for v in VIEWS} == {"VIEW"}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_file_exports_have_one_file_per_table_and_view(sample_build, tmp_path, fmt):
    output = sample_build["catalog"].rsplit("/", 1)[0]
    done = export(output, fmt, tmp_path / "snapshot")
    assert done.returncode == 0, done.stderr
    expected = counts_in(sample_build["catalog"])
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    for name, rows in expected.items():
        path = tmp_path / "snapshot" / f"{name}.{fmt}"
        with duckdb.connect() as con:  # not the module's default connection: tests share it
            assert con.execute(f"SELECT count(*) FROM {reader}('{path}')").fetchone()[0] == rows, name


def test_export_refuses_a_non_empty_target_and_a_missing_publication(sample_build, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    busy = export(sample_build["catalog"].rsplit("/", 1)[0], "csv", tmp_path / "full")
    assert busy.returncode == 1 and busy.stderr.startswith("error: export target is not empty")
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    none = export(tmp_path / "nothing", "duckdb", tmp_path / "t")
    assert none.returncode == 1 and "no current publication" in none.stderr
