"""The Dask engine's local workers are processes from the fork server, never forks of the
caller (a test or a program importing mlops-ci, with threads of its own). `mlops-ci
batch-score`'s local engine forks the command's own process instead, after its imports and
before any model or thread of its own (``batch/forked.py``)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys

import pytest

from mlops_ci.batch.workers import mp_context


def _parent(_: int) -> int:
    return os.getppid()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux's")
def test_workers_never_fork_the_calling_process_whose_threads_they_would_inherit() -> None:
    # This process runs threads (pytest-timeout's, onnxruntime's, pyarrow's): a child forked
    # from it while one holds a lock can wait forever. Workers come from the fork server.
    with cf.ProcessPoolExecutor(2, mp_context=mp_context()) as pool:
        parents = set(pool.map(_parent, range(4)))
    assert os.getpid() not in parents and len(parents) == 1
