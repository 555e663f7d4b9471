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
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.errors import InputError, MlopsError, TrainingError
from mlops_ci.runner import wire
from mlops_ci.runner.files import model_files, write_files
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


class _Child:
    """One worker process and its pipe; a model has one of its own, so a candidate's code
    cannot reach the production model it is compared with."""

    def __init__(self, isolation: Isolation) -> None:
        self.isolation = isolation
        self._lock = threading.RLock()
        self._stack = ExitStack()
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise

    def _start(self) -> None:
        """In the sandbox, the child's cwd is a private folder it may write (mlops-ci never
        reads it: files travel over the pipe); without one, no folder at all (a read-only
        container serves too). Its stderr is a memory file."""
        stack = self._stack
        folder = None
        if self.isolation.mechanism is not None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlops-")))
        env = {k: os.environ[k] for k in ALLOWED_VARIABLES if k in os.environ}
        env.setdefault("PATH", os.defpath)
        argv = [sys.executable, "-I", "-m", "mlops_ci.runner.worker"]
        where = folder or Path.cwd()
        how = stack.enter_context(launch(self.isolation, argv, env, where, where))
        self._stderr = stack.enter_context(os.fdopen(os.memfd_create("mlops-runner-stderr"), "w+b"))
        proc = subprocess.Popen(
            how.argv,
            env=how.env,
            cwd=folder,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            pass_fds=how.pass_fds,
            close_fds=True,
        )
        stack.callback(_stop, proc)
        self._proc: subprocess.Popen[bytes] | None = proc

    def close(self) -> None:
        with self._lock:
            self._stack.close()
            self._proc = None

    def _said(self) -> str:
        """The last line the child wrote to its standard error (why it stopped)."""
        self._stderr.seek(0, os.SEEK_END)
        size = self._stderr.tell()
        self._stderr.seek(max(0, size - _STDERR_TAIL))
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def request(
        self, op: str, args: dict[str, Any], values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request and its answer; the worker's error raised here as the same kind. An
        answer that is not a message this code wrote (the model writing on the pipe) ends
        the child: what follows on the pipe cannot be trusted to answer this question."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise RunnerError(f"the model runner was stopped before {op}")
            try:
                wire.send(proc.stdin, {"op": op, "args": args}, values or {})
                header, answer = wire.receive(proc.stdout)
                ok = header.get("ok")
            except (BrokenPipeError, EOFError, ConnectionError):
                code, said = proc.poll(), self._said()
                self.close()
                raise RunnerError(
                    f"the model runner stopped (exit {code}) during {op}"
                    + (f": {said}" if said else "")
                ) from None
            except Exception as err:  # a forged or torn message: anything decode raises
                self.close()
                raise RunnerError(
                    f"the model runner answered {op} with what is not a message of its own "
                    f"({type(err).__name__}); stopped"
                ) from None
        if ok is True:
            return answer
        raise _raised(header)


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


def _undumpable() -> None:
    """Make this process's ``/proc/<pid>/environ`` and memory unreadable to a child of the
    same user (PR_SET_DUMPABLE 0; a root or CAP_SYS_PTRACE child still reads them): where
    there is no sandbox, the model's child is one ``/proc`` read away otherwise."""
    import ctypes

    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4


class ModelRunner:
    """The model runner of a verb: each model loaded gets a child of its own (started at its
    load, stopped by ``close`` or the ``with`` block's end). Calls to one model are
    serialised: a server may call from many threads."""

    def __init__(self, isolation: Isolation | str = "auto") -> None:
        self.isolation = isolation_for(isolation) if isinstance(isolation, str) else isolation
        explicit_off = isinstance(isolation, str) and isolation == "off"
        # Types of a skops file beyond the allow-list load only where the child is isolated,
        # or where isolation was explicitly turned off.
        self.unrestricted = self.isolation.mechanism is not None or explicit_off
        self._guard = self.isolation.mechanism is None and not explicit_off
        self._lock = threading.Lock()
        self._children: list[_Child] = []

    def __enter__(self) -> ModelRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def started(self) -> bool:
        return bool(self._children)

    def close(self) -> None:
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            child.close()

    def load(self, path: Path, task: str = "classification") -> RemoteModel:
        """A training command's model file (``.joblib``, ``.pkl``, ``.skops``, XGBoost's or
        LightGBM's own file), loaded in a child of its own."""
        return self._load(path, task, folder=False)

    def load_folder(self, folder: Path) -> RemoteModel:
        """The native model of an MLflow sklearn-flavor folder or a package folder."""
        return self._load(folder, "", folder=True)

    def _load(self, path: Path, task: str, folder: bool) -> RemoteModel:
        if self._guard:
            _undumpable()
        # In the sandbox the files travel over the pipe (the child sees none of the host's
        # temporary folders, and writes where mlops-ci never reads); else it reads them.
        sandboxed = self.isolation.mechanism is not None
        files = model_files(path, folder) if sandboxed else None
        child = _Child(self.isolation)
        with self._lock:
            self._children.append(child)
        args = {"path": None if sandboxed else str(path.resolve()), "name": path.name,
                "task": task, "folder": folder, "unrestricted": self.unrestricted}  # fmt: skip
        answer = child.request("load", args, {"files": files})
        return RemoteModel(child, int(answer["handle"]), answer["info"], path)


def _raised(header: dict[str, Any]) -> Exception:
    said, hint, kind = str(header.get("error", "?")), header.get("hint"), header.get("kind")
    if kind == wire.TRAINING:
        return TrainingError(said, hint=hint)
    if kind == wire.REFUSED:
        from mlops_ci.packaging.convert import ConversionRefused

        return ConversionRefused(said, hint=hint)
    if kind == wire.INPUT:
        return InputError(said, hint=hint)
    if kind == wire.VALUES:
        return ValuesRefused(said, hint=hint)
    return ModelFailed(
        f"{header.get('type', 'Error')}: {said}" if said else str(header.get("type"))
    )


class ModelFailed(MlopsError):
    """The model raised something other than a ValueError (its own failure, named)."""


class RemoteModel:
    """A model loaded in the runner's child, with the face of a fitted scikit-learn model."""

    def __init__(self, child: _Child, handle: int, info: dict[str, Any], source: Path):
        self.child = child
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
        return self.child.request("call", {"handle": self.handle, "method": method}, {"x": x})

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
        answer = self.child.request(
            "convert", {"handle": self.handle, "target_opset": target_opset},
            {"features": features},
        )  # fmt: skip
        return bytes(answer["onnx"]), str(answer["layout"])

    def save_mlflow(self, dest: Path, signature: Any, pip_requirements: list[str]) -> list[str]:
        """MLflow's sklearn flavor of the model, saved by the child and written in ``dest`` (a
        folder of this process's: the files come over the pipe); the skops types trusted."""
        answer = self.child.request(
            "save_mlflow",
            {"handle": self.handle, "pip_requirements": pip_requirements,
             "signature": signature.to_dict() if signature is not None else None},
        )  # fmt: skip
        files = answer["files"]
        if not isinstance(files, dict) or not all(isinstance(v, bytes) for v in files.values()):
            raise RunnerError("the model runner answered save_mlflow without its files")
        write_files(dest, files, "the model's MLflow folder")
        return [str(t) for t in answer["trusted"]]

    def peak_rss_mb(self) -> float:
        """The child's peak resident memory (VmHWM), in MiB: the memory probe of a model (a
        child holds one model)."""
        return int(self.child.request("peak_rss", {})["kib"]) / 1024

    def timings(
        self, features: Any, single_row_runs: int, batch_sizes: tuple[int, ...]
    ) -> dict[str, Any]:
        """Latency and throughput measured in the child, beside the model."""
        return self.child.request(
            "measure",
            {"handle": self.handle, "single_row_runs": single_row_runs,
             "batch_sizes": list(batch_sizes)},
            {"features": features},
        )  # fmt: skip
