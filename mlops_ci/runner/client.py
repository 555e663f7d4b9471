"""The one way mlops-ci executes a model a training command produced: in a child process.

A model file (pickle, skops, an MLflow folder) is code: unpickling it runs what its author
chose. So mlops-ci never loads one in its own process, which holds the registry password and
the GitHub token. :class:`ModelRunner` starts :mod:`mlops_ci.runner.worker` once per verb, in
the sandbox of :mod:`mlops_ci.sandbox` where bubblewrap works (else a plain child, said in the
isolation line), from an environment of :data:`ALLOWED_VARIABLES` only, and talks to it over
its standard input and output with :mod:`mlops_ci.runner.wire` (JSON and raw arrays, never
pickle). The files to load are copied into the runner's own folder first: the sandbox sees
nothing else of the host's temporary folders.

:class:`RemoteModel` is the model as the rest of mlops-ci sees it: ``predict``,
``predict_proba`` (when the model has it), ``classes_``, ``feature_names_in_``,
``n_features_in_`` and what the worker said of it (``model_kind``, ``model_is_classifier``,
``model_outputs``, ``distributions``), so scoring, importance and the parity check keep their shape.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlops_ci.errors import InputError, MlopsError, TrainingError
from mlops_ci.runner import wire
from mlops_ci.sandbox import Isolation, isolation_for, launch

# What the child's environment may hold: no credential, no MLflow or cloud variable.
ALLOWED_VARIABLES = (
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
)  # fmt: skip
_STDERR_TAIL = 4000


class RunnerError(MlopsError):
    """The model runner stopped or answered what this code did not ask for."""


class ValuesRefused(InputError):
    """The model refused the values it was given (a ValueError of its own): the caller says
    whose values they were (a request's: a 4xx)."""


class ModelRunner:
    """One child for a verb, started at the first load; ``close`` (or the ``with`` block's end)
    stops it. Calls are serialised: a server may call from many threads."""

    def __init__(self, isolation: Isolation | str = "auto") -> None:
        self.isolation = isolation_for(isolation) if isinstance(isolation, str) else isolation
        # Types of a skops file beyond the allow-list load only where the child is isolated,
        # or where isolation was explicitly turned off.
        self.unrestricted = self.isolation.mechanism is not None or (
            isinstance(isolation, str) and isolation == "off"
        )
        self._lock = threading.RLock()
        self._stack: ExitStack | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._requests: IO[bytes] | None = None
        self._answers: IO[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._folder: Path | None = None
        self._copies = 0

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return self._proc is not None

    def _start(self) -> None:
        """The child: in the sandbox with a private folder (the only place it may write, where
        the files to load are copied); without one, on the host's files as they are (so a
        read-only container with no writable /tmp serves too). Its stderr is a memory file."""
        stack = ExitStack()
        try:
            folder = None
            if self.isolation.mechanism is not None:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlops-")))
            env = {k: os.environ[k] for k in ALLOWED_VARIABLES if k in os.environ}
            env.setdefault("PATH", os.defpath)
            argv = [sys.executable, "-I", "-m", "mlops_ci.runner.worker"]
            where = folder or Path.cwd()
            how = stack.enter_context(launch(self.isolation, argv, env, where, where))
            stderr = stack.enter_context(os.fdopen(os.memfd_create("mlops-runner-stderr"), "w+b"))
            proc = subprocess.Popen(
                how.argv,
                env=how.env,
                cwd=folder,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                pass_fds=how.pass_fds,
                close_fds=True,
            )
        except BaseException:
            stack.close()
            raise
        stack.callback(self._stop, proc)
        self._stack, self._proc, self._folder, self._stderr = stack, proc, folder, stderr
        self._requests, self._answers = proc.stdin, proc.stdout

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        with self._lock:
            if self._stack is not None:
                self._stack.close()
            self._stack = self._proc = self._requests = self._answers = None
            self._folder = self._stderr = None

    def _said(self) -> str:
        """The last line the child wrote to its standard error (why it stopped)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL))
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def request(
        self, op: str, args: dict[str, Any], values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request and its answer; the worker's error raised here as the same kind."""
        with self._lock:
            if self._proc is None:
                self._start()
            assert self._requests is not None and self._answers is not None and self._proc
            try:
                wire.send(self._requests, {"op": op, "args": args}, values or {})
                header, answer = wire.receive(self._answers)
            except (BrokenPipeError, EOFError, ConnectionError):
                code = self._proc.poll()
                said = self._said()
                self.close()
                raise RunnerError(
                    f"the model runner stopped (exit {code}) during {op}"
                    + (f": {said}" if said else "")
                ) from None
        if header.get("ok"):
            return answer
        raise _raised(header)

    def load(self, path: Path, task: str = "classification") -> RemoteModel:
        """A training command's model file (``.joblib``, ``.pkl``, ``.skops``, XGBoost's or
        LightGBM's own file), loaded in the child."""
        return self._load(path, task, folder=False)

    def load_folder(self, folder: Path) -> RemoteModel:
        """The native model of an MLflow sklearn-flavor folder or a package folder."""
        return self._load(folder, "", folder=True)

    def _load(self, path: Path, task: str, folder: bool) -> RemoteModel:
        with self._lock:
            if self._proc is None:
                self._start()
            copy = path
            if self._folder is not None and self.isolation.mechanism is not None:
                # the sandbox sees only its own folder of the host's temporary ones
                self._copies += 1
                copy = self._folder / f"model-{self._copies}" / path.name
                copy.parent.mkdir()
                if folder:
                    shutil.copytree(path, copy, symlinks=False)
                else:
                    shutil.copyfile(path, copy)
            answer = self.request(
                "load",
                {"path": str(copy.resolve()), "task": task, "folder": folder,
                 "unrestricted": self.unrestricted},
            )  # fmt: skip
        return RemoteModel(self, int(answer["handle"]), answer["info"], path)

    def peak_rss_mb(self) -> float:
        """The child's peak resident memory (VmHWM), in MiB: the memory probe of a model."""
        return int(self.request("peak_rss", {})["kib"]) / 1024

    def workspace(self, name: str) -> Path:
        """A new folder the child may write (``save_mlflow``'s destination)."""
        with self._lock:
            if self._proc is None:
                self._start()
            assert self._stack is not None
            if self._folder is None:  # no sandbox: a temporary folder of the host
                made = tempfile.TemporaryDirectory(prefix="mlops-runner-")
                self._folder = Path(self._stack.enter_context(made))
            self._copies += 1
            out = self._folder / f"out-{self._copies}-{name}"
            out.mkdir()
            return out


def _raised(header: dict[str, Any]) -> Exception:
    from mlops_ci.runner import worker

    said, hint, kind = str(header.get("error", "?")), header.get("hint"), header.get("kind")
    if kind == worker.TRAINING:
        return TrainingError(said, hint=hint)
    if kind == worker.REFUSED:
        from mlops_ci.packaging.convert import ConversionRefused

        return ConversionRefused(said, hint=hint)
    if kind == worker.INPUT:
        return InputError(said, hint=hint)
    if kind == worker.VALUES:
        return ValuesRefused(said, hint=hint)
    return ModelFailed(
        f"{header.get('type', 'Error')}: {said}" if said else str(header.get("type"))
    )


class ModelFailed(MlopsError):
    """The model raised something other than a ValueError (its own failure, named)."""


class RemoteModel:
    """A model loaded in the runner's child, with the face of a fitted scikit-learn model."""

    def __init__(self, runner: ModelRunner, handle: int, info: dict[str, Any], source: Path):
        self.runner = runner
        self.handle = handle
        self.info = info
        self.source = source
        self.model_kind: str = str(info.get("kind") or "")
        self.model_is_classifier = bool(info.get("classifier"))
        self.distributions: tuple[str, ...] = tuple(info.get("distributions") or ())
        self.type_name = str(info.get("type", "?"))
        if info.get("n_features") is not None:
            self.n_features_in_ = int(info["n_features"])
        if info.get("columns") is not None:
            self.feature_names_in_ = np.asarray(info["columns"], dtype=object)
        if info.get("classes") is not None:
            self.classes_ = np.asarray([wire._unscalar(c) for c in info["classes"]])

    def __repr__(self) -> str:
        return f"<{self.type_name} in the model runner>"

    def __getattr__(self, name: str) -> Any:
        # Only what the model has: a regressor has no predict_proba (is_classifier asks).
        if name == "predict_proba" and self.__dict__.get("info", {}).get("has_proba"):
            return self._predict_proba
        raise AttributeError(name)

    def _call(self, method: str, x: Any) -> dict[str, Any]:
        return self.runner.request("call", {"handle": self.handle, "method": method}, {"x": x})

    def predict(self, x: Any) -> Any:
        return self._call("predict", x)["y"]

    def _predict_proba(self, x: Any) -> Any:
        return self._call("predict_proba", x)["y"]

    def model_outputs(self, x: Any) -> tuple[Any, Any]:
        """``convert.native_outputs`` of the model, computed beside it: (labels, scores)."""
        answer = self._call("outputs", x)
        return answer["labels"], answer["scores"]

    def to_onnx(self, features: Any, target_opset: int | None) -> tuple[bytes, str]:
        """skl2onnx's conversion, made in the child: the ONNX bytes and their input layout."""
        answer = self.runner.request(
            "convert", {"handle": self.handle, "target_opset": target_opset},
            {"features": features},
        )  # fmt: skip
        return bytes(answer["onnx"]), str(answer["layout"])

    def save_mlflow(self, dest: Path, signature: Any, pip_requirements: list[str]) -> list[str]:
        """MLflow's sklearn flavor of the model written in ``dest`` (a runner workspace); the
        skops types it was told to trust."""
        answer = self.runner.request(
            "save_mlflow",
            {"handle": self.handle, "dest": str(dest), "pip_requirements": pip_requirements,
             "signature": signature.to_dict() if signature is not None else None},
        )  # fmt: skip
        return [str(t) for t in answer["trusted"]]

    def timings(
        self, features: Any, single_row_runs: int, batch_sizes: tuple[int, ...]
    ) -> dict[str, Any]:
        """Latency and throughput measured in the child, beside the model."""
        return self.runner.request(
            "measure",
            {"handle": self.handle, "single_row_runs": single_row_runs,
             "batch_sizes": list(batch_sizes)},
            {"features": features},
        )  # fmt: skip
