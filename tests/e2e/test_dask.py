"""The same flow on a Dask cluster, and input read through fsspec URLs."""

from __future__ import annotations

import duckdb
import fsspec
import pytest

from pipeline.core.cluster import ClusterError, DaskTarget
from pipeline.core.locations import LocationError, input_location, output_location
from pipeline.core.tables import PUBLISHED
from pipeline.synthetic.generate import generate
from tests.conftest import SAMPLE, TODAY, build_tables
from tests.e2e.test_cli import run_cli

# Every published table but the run and change logs (which differ between any two runs).
TABLES = tuple(t for t in PUBLISHED if t not in ("runs", "changes"))


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES}


def test_dask_targets():
    assert DaskTarget.parse("local:2") == DaskTarget(local_workers=2)
    assert DaskTarget.parse("tcp://10.0.0.5:8786") == DaskTarget(address="tcp://10.0.0.5:8786")
    for bad in ("local:0", "local:x", "10.0.0.5:8786", "http://x:8786", ""):
        with pytest.raises(ClusterError):
            DaskTarget.parse(bad)


def test_locations(tmp_path):
    assert input_location(f"file://{tmp_path}") == tmp_path
    assert output_location(f"file://{tmp_path}/out") == tmp_path / "out"
    assert input_location("memory://archive") == "memory://archive"
    with pytest.raises(LocationError, match="atomic rename"):
        output_location("s3://bucket/out")
    with pytest.raises(LocationError, match="no fsspec filesystem"):
        input_location("nosuchprotocol://x")


def test_an_archive_read_through_fsspec_gives_the_same_tables(tmp_path):
    fs = fsspec.filesystem("memory")
    root = "/archive-under-test"
    for path in SAMPLE.rglob("*.md"):
        fs.pipe(f"{root}/{path.relative_to(SAMPLE).as_posix()}", path.read_bytes())
    try:
        local = snapshot(build_tables(SAMPLE, tmp_path / "local"))
        remote_con = build_tables(f"memory://{root}", tmp_path / "remote")
        remote = snapshot(remote_con)
    finally:
        fs.rm(root, recursive=True)
    assert remote == local
    assert len(local["events"]) == 32


def test_cli_refuses_bad_cluster_and_object_store_output(tmp_path):
    out = run_cli("run", "--input", str(SAMPLE), "--output", str(tmp_path / "o"), "--dask", "10.0.0.5")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: --dask '10.0.0.5': expected a scheduler address (tcp://HOST:8786) or local:N"
    ]
    out = run_cli("run", "--input", str(SAMPLE), "--output", "s3://bucket/news")
    assert out.returncode == 1 and "atomic rename" in out.stderr
    out = run_cli(
        "run", "--input", str(SAMPLE), "--output", str(tmp_path / "o"), "--dask", "tcp://127.0.0.1:1"
    )
    assert out.returncode == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in out.stderr
    assert not (tmp_path / "o" / "news.duckdb").exists()


@pytest.mark.flow
def test_a_local_cluster_with_a_worker_killed_mid_run_gives_the_local_result(
    prefect_server, tmp_path, monkeypatch
):
    from flows.news_etl import news_etl

    archive = tmp_path / "archive"
    generate(600, archive, seed=11, malformed=0.1, today=TODAY)
    expected = snapshot(build_tables(archive, tmp_path / "local"))
    # The first worker to write a staging batch dies half-way (SIGKILL); Dask reruns the batch.
    marker = tmp_path / "killed"
    monkeypatch.setenv("PIPELINE_CRASH_AT", "stage:partial-batch")
    monkeypatch.setenv("PIPELINE_CRASH_ONCE", str(marker))
    result = news_etl(input=str(archive), output=str(tmp_path / "out"), dask="local:2", batch_size=50)
    assert marker.exists()  # a worker really was killed
    con = duckdb.connect(result["catalog"], read_only=True)
    try:
        assert snapshot(con) == expected
    finally:
        con.close()
