"""Where the parse work runs: local processes, or a Dask cluster (`--dask`).

`--dask tcp://HOST:8786` connects to an existing scheduler; `--dask local:N` starts
a LocalCluster of N single-threaded worker processes for the run. The parse stage
then submits its batches of files through the client's concurrent.futures executor
(dask.distributed directly, not prefect-dask's DaskTaskRunner, whose open issues with
nested process pools and with re-running finished tasks after a worker dies are the
cases that matter here). A batch is a pure function of its files: it writes its
staging Parquet temp-then-rename, so when a worker dies Dask simply runs the batch
again elsewhere and the result is the same. Normalize, validate and publish stay in
the flow's process: they are DuckDB joins over the whole staging set, and publishing
needs the output's atomic renames.

Workers need the `pipeline` package installed (the same version as the flow), and
must see the input (a shared path or an fsspec URL such as s3://) and the output
folder (a shared filesystem: batches are written to OUTPUT/state/staging).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass

_LOCAL = re.compile(r"^local:(\d+)$")
_REMOTE = re.compile(r"^(tcp|tls|ucx|inproc|ws|wss)://\S+$")


class ClusterError(ValueError):
    """A --dask value that is not a scheduler address or `local:N`, or an unreachable cluster."""


@dataclass(frozen=True)
class DaskTarget:
    """A Dask scheduler address, or the size of a LocalCluster to start."""

    address: str | None = None
    local_workers: int | None = None

    @classmethod
    def parse(cls, text: str) -> DaskTarget:
        if match := _LOCAL.match(text):
            workers = int(match.group(1))
            if workers < 1:
                raise ClusterError(f"--dask {text}: a LocalCluster needs at least 1 worker")
            return cls(local_workers=workers)
        if _REMOTE.match(text):
            return cls(address=text)
        raise ClusterError(f"--dask {text!r}: expected a scheduler address (tcp://HOST:8786) or local:N")


@dataclass(frozen=True)
class Pool:
    """An executor to submit batches to and how many batches it runs at once."""

    executor: Executor
    slots: int


@contextmanager
def dask_pool(target: DaskTarget, connect_timeout: float = 30.0) -> Iterator[Pool]:
    """A Dask client's executor for the duration of the block (and its LocalCluster, if any)."""
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if target.local_workers is not None:
            cluster = LocalCluster(
                n_workers=target.local_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
            client = Client(cluster)
        else:
            try:
                client = Client(target.address, timeout=connect_timeout)
            except OSError as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {target.address}: {exc}") from exc
        try:
            slots = sum(client.nthreads().values())
            if slots == 0:
                raise ClusterError(f"the Dask cluster {target.address or '(local)'} has no workers")
            yield Pool(client.get_executor(pure=False), slots)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
