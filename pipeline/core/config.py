"""Run configuration and every path the pipeline writes, built in one place."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pipeline.core.cluster import DaskTarget
from pipeline.core.locations import input_location, output_location

DEFAULT_INPUT = Path("examples/news")
DEFAULT_OUTPUT = Path("output")
# The bundled suites: the repository's `expectations/` folder, installed as the package
# `pipeline.quality.expectations` (pyproject.toml maps it), so an installed copy validates too.
DEFAULT_EXPECTATIONS = Path(str(resources.files("pipeline.quality.expectations")))


@dataclass(frozen=True)
class StorylineRule:
    """When a context is specific enough to join events into one storyline."""

    max_tag_events: int = 500
    max_tag_span_days: int = 730

    def __post_init__(self) -> None:
        if self.max_tag_events < 1 or self.max_tag_span_days < 0:
            raise ValueError("max_tag_events must be at least 1 and max_tag_span_days at least 0")


def utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class ConfigError(ValueError):
    """A run option the pipeline cannot use, with the reason (one line)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything a run depends on. Paths are absolute so no stage depends on the cwd; the
    input may also be a remote fsspec URL, kept as a string."""

    input_dir: Path | str  # a local folder, or an fsspec URL (pipeline/locations.py)
    output_dir: Path
    full_refresh: bool = False
    batch_size: int = 2000
    workers: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 8)))
    keep_publications: int = 3
    today: dt.date = field(default_factory=lambda: utc_today())  # looked up per run (tests move the clock)
    show_progress: bool = False
    expectations_dir: Path = DEFAULT_EXPECTATIONS
    storylines: StorylineRule = field(default_factory=StorylineRule)
    dask: str | None = None  # a scheduler address or `local:N` (pipeline/cluster.py); None: local processes
    allow_shrink: bool = False  # publish even when `events` shrinks below SHRINK_FLOOR of the current
    # A publication that was current this recently is not pruned (open readers, exports).
    retention: dt.timedelta = dt.timedelta(hours=1)
    # Data Docs are rebuilt for each publication; a watcher's small batches skip them (0.2 s of a
    # one-file batch) and its sweeps rebuild them.
    data_docs: bool = True
    # ... and write their HTML run report in the background, after the batch (0.1 s at 1M).
    report_later: bool = False
    # ... and validate the suites that wait for the tags and storylines in a second validation
    # process, beside the first one's (EarlyChecks, flows/news_etl.py).
    split_validation: bool = False

    def __post_init__(self) -> None:
        """Every check of a run's inputs, in one place (the command line, `serve` and a
        deployment's flow runs all build a RunConfig); ConfigError says what is wrong."""
        try:
            object.__setattr__(self, "input_dir", input_location(self.input_dir))
            object.__setattr__(self, "output_dir", output_location(self.output_dir))
            if self.dask is not None:
                DaskTarget.parse(self.dask)
        except ValueError as exc:  # LocationError, ClusterError
            raise ConfigError(str(exc)) from None
        object.__setattr__(self, "expectations_dir", Path(self.expectations_dir).resolve())
        source, output = self.input_dir, self.output_dir
        if isinstance(source, Path) and not source.is_dir():
            kind = "is not a folder" if source.exists() else "not found"
            raise ConfigError(f"input folder {kind}: {source}")
        if output.exists() and not output.is_dir():
            raise ConfigError(f"the output {output} is a file, not a folder")
        if isinstance(source, Path) and (output == source or output.is_relative_to(source)):
            raise ConfigError(f"the output folder {output} must not be inside the input folder {source}")
        if not self.expectations_dir.is_dir():
            raise ConfigError(f"expectations folder not found: {self.expectations_dir}")
        if self.batch_size < 1 or self.workers < 1 or self.keep_publications < 1:
            raise ConfigError("--batch-size, --workers and --keep must be at least 1")
        if self.retention < dt.timedelta(0):
            raise ConfigError("--retention must not be negative")

    @property
    def build_options(self) -> str:
        """The options that shape the tables (part of the code fingerprint)."""
        return f"storylines={self.storylines.max_tag_events},{self.storylines.max_tag_span_days}"

    @property
    def layout(self) -> OutputLayout:
        return OutputLayout(self.output_dir)


@dataclass(frozen=True)
class OutputLayout:
    """The output folder: the catalog, versioned publications and the working area."""

    root: Path

    @property
    def catalog(self) -> Path:
        return self.root / "news.duckdb"

    @property
    def publications(self) -> Path:
        return self.root / "publications"

    def publication(self, run_id: str) -> Path:
        return self.publications / run_id

    @property
    def current(self) -> Path:
        """Symlink to the current publication: `OUTPUT/current/<table>.parquet`."""
        return self.root / "current"

    @property
    def work(self) -> Path:
        return self.root / ".work"

    def run_work(self, run_id: str) -> Path:
        return self.work / run_id

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def staging(self) -> Path:
        """Staged rows of every input file, kept across runs for incremental builds."""
        return self.state / "staging"

    @property
    def manifest(self) -> Path:
        """Per input file: content hash, size, mtime, status and the batch holding its rows."""
        return self.state / "manifest.parquet"

    @property
    def run_log(self) -> Path:
        """Every run, published or not; the `runs` table is a copy of it."""
        return self.state / "runs.parquet"

    @property
    def registry(self) -> Path:
        """The runs that made folders here, and when each publication was current."""
        return self.state / "publications.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def validation(self) -> Path:
        return self.root / "validation"

    @property
    def report(self) -> Path:
        """The HTML run reports: `<run_id>.html` per run, `index.html` the newest."""
        return self.root / "report"
