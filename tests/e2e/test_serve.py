"""Scheduling: `serve` and prefect.yaml declare the same flow and schedule."""

from pathlib import Path

import yaml

from pipeline.cli import DEFAULT_CRON, _parser, serve_options
from tests.conftest import REPO


def test_serve_builds_a_scheduled_deployment_of_the_real_flow(tmp_path):
    from flows.news_etl import news_etl

    args = _parser().parse_args(
        [
            "serve",
            "--cron",
            "0 * * * *",
            "--input",
            "examples/news",
            "--output",
            str(tmp_path / "out"),
            "--allow-shrink",
            "--keep",
            "5",
            "--retention",
            "2h",
            "--workers",
            "1",
        ]
    )
    options = serve_options(args)
    deployment = news_etl.to_deployment(**options)
    assert deployment.name == "news-etl-scheduled"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 * * * *"]
    assert Path(deployment.parameters["input"]).is_absolute()
    assert deployment.parameters["output"] == str(tmp_path / "out")
    # the run's options reach every scheduled run, and each is a parameter of the real flow
    assert {k: deployment.parameters[k] for k in ("allow_shrink", "keep", "retention", "workers")} == {
        "allow_shrink": True,
        "keep": 5,
        "retention": "2h",
        "workers": 1,
    }
    assert set(deployment.parameters) <= set(news_etl.parameters.properties)


def test_prefect_yaml_declares_the_same_deployment():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (deployment,) = spec["deployments"]
    module, _, name = deployment["entrypoint"].partition(":")
    assert (REPO / module).exists() and name == "news_etl"
    assert deployment["schedules"][0]["cron"] == DEFAULT_CRON
    assert set(deployment["parameters"]) == {"input", "output", "full_refresh"}
    from flows.news_etl import news_etl

    assert {"input", "output", "full_refresh"} <= set(news_etl.parameters.properties)


def test_serve_without_a_prefect_server_is_a_clear_error(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "serve", "--input", str(REPO / "examples" / "news")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: serve needs a Prefect server to schedule runs: start one with `prefect server start` "
        "and set PREFECT_API_URL=http://127.0.0.1:4200/api"
    ]
