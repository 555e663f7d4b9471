"""The one way mlops-ci executes a model a training command produced: in a child process.

A model file (pickle, skops, an MLflow folder) is code: unpickling it runs what its author
chose. So mlops-ci never loads one in its own process, which holds the registry password and
the GitHub token. :class:`ModelRunner` starts :mod:`mlops_ci.runner.worker` once per model it
loads (so a candidate's code cannot reach the production model it is compared with), in the
sandbox of :mod:`mlops_ci.sandbox` where bubblewrap works (else a plain child, said in the
isolation line), from an environment of :data:`~mlops_ci.sandbox.ALLOWED_VARIABLES` only, and
talks to it over its standard input and output with :mod:`mlops_ci.runner.wire` (JSON and raw
arrays, never pickle). In the sandbox the model's files travel over the pipe too: the child
sees none of the host's temporary folders, and mlops-ci reads nothing it wrote on disk.

Every answer is checked for the shape its question expects; one that is not (a model writing
on the pipe) stops the child with one error line. :class:`RemoteModel` is the model as the
rest of mlops-ci sees it: ``predict``, ``predict_proba`` (when the model has it), ``classes_``,
``feature_names_in_``, ``n_features_in_`` and what the worker said of it (``model_kind``,
``model_is_classifier``, ``model_outputs``, ``distributions``), so scoring, importance and the
parity check keep their shape.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import threading
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import numpy as np

from mlops_ci.errors import InputError, MlopsError, TrainingError
from mlops_ci.runner import wire
from mlops_ci.runner.files import code_files, model_files, write_files
from mlops_ci.sandbox import Isolation, allowed_environment, isolation_for, launch, python_argv

_STDERR_TAIL = 4000
_STDERR_KEPT = 1 << 20  # past this, the child's stderr file keeps its tail only
# At most this many distributions a model's child may say it needs.
MAX_DISTRIBUTIONS = 64
_log = logging.getLogger(__name__)


class RunnerError(MlopsError):
    """The model runner stopped or answered what this code did not ask for."""


class ValuesRefused(InputError):
    """The model refused the values it was given (a ValueError of its own): the caller says
    whose values they were (a request's: a 4xx)."""


class _Child:
    """One worker process and its pipe: a model has one of its own."""

    def __init__(self, isolation: Isolation) -> None:
        self.isolation = isolation
        self._lock = threading.RLock()
        self._stack = ExitStack()
        self._proc: subprocess.Popen[bytes] | None = None
        try:
            self._start()
        except BaseException:
            self._stack.close()
            raise

    def _start(self) -> None:
        """In the sandbox, the child's cwd is a private folder it may write (mlops-ci never
        reads it: files travel over the pipe); without one, no folder at all (a read-only
        container serves too). Its stderr is a memory file, appended to."""
        import tempfile

        stack = self._stack
        folder = None
        if self.isolation.mechanism is not None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlops-")))
        argv = [*python_argv(), "-m", "mlops_ci.runner.worker"]
        where = folder or Path("/")  # never the project: nothing of it is imported
        env = allowed_environment()
        how = stack.enter_context(launch(self.isolation, argv, env, where, where))
        self._stderr = stack.enter_context(os.fdopen(os.memfd_create("mlops-runner-stderr"), "w+b"))
        flags = fcntl.fcntl(self._stderr.fileno(), fcntl.F_GETFL)
        fcntl.fcntl(self._stderr.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
        proc = subprocess.Popen(
            how.argv,
            env=how.env,
            cwd=where,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            pass_fds=how.pass_fds,
            close_fds=True,
        )
        stack.callback(_stop, proc)
        self._proc = proc

    def close(self) -> None:
        """Kill the child first (a call stuck in the model holds the lock), then clean up."""
        proc = self._proc
        if proc is not None:
            with suppress(OSError):
                proc.kill()
        with self._lock:
            self._stack.close()
            self._proc = None

    def _tail(self) -> bytes:
        self._stderr.seek(max(0, os.fstat(self._stderr.fileno()).st_size - _STDERR_TAIL))
        return self._stderr.read()

    def _said(self) -> str:
        """The last line the child wrote to its standard error (why it stopped)."""
        lines = self._tail().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _trim(self) -> None:
        """A model that prints on every call: past ``_STDERR_KEPT`` bytes, keep the tail."""
        if os.fstat(self._stderr.fileno()).st_size > _STDERR_KEPT:
            tail = self._tail()
            self._stderr.truncate(0)
            self._stderr.write(tail)
            self._stderr.flush()

    def request(
        self, op: str, args: dict[str, Any], values: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request and its answer; the worker's error raised here as the same kind. An
        answer that is not a message of this code's ends the child: what follows on the pipe
        cannot be trusted to answer this question."""
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise RunnerError(f"the model runner was stopped before {op}")
            try:
                wire.send(proc.stdin, {"op": op, "args": args}, values or {})
                header, answer = wire.receive(proc.stdout)
                ok = header.get("ok")
            except (BrokenPipeError, EOFError, ConnectionError, ValueError) as err:
                code = proc.poll()
                said = self._said()
                self.close()
                if isinstance(err, ValueError):  # a forged or torn message (WireError)
                    raise RunnerError(
                        f"the model runner answered {op} with what is not a message of its "
                        f"own ({err}); stopped"
                    ) from None
                raise RunnerError(
                    f"the model runner stopped (exit {code}) during {op}"
                    + (f": {said}" if said else "")
                ) from None
            self._trim()
        if ok is True:
            return answer
        if ok is False:
            raise _raised(header)
        self.close()
        raise RunnerError(f"the model runner answered {op} without saying whether it worked")

    def expect(self, answer: dict[str, Any], key: str, kind: Any, op: str) -> Any:
        """``answer[key]`` when it is a ``kind``, else the child is stopped: an answer of the
        wrong shape is not one the worker wrote."""
        value = answer.get(key)
        if not isinstance(value, kind):
            self.close()
            raise RunnerError(
                f"the model runner answered {op} with a {type(value).__name__} for {key!r}; stopped"
            )
        return value


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

    try:
        done = ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError) as err:
        _log.warning("could not make mlops-ci undumpable: %s", err)
        return
    if done != 0:
        _log.warning("could not make mlops-ci undumpable: errno %s", ctypes.get_errno())


class ModelRunner:
    """The model runner of a verb: each model loaded gets a child of its own (started at its
    load, stopped by ``close`` or the ``with`` block's end). Calls to one model are
    serialised: a server may call from many threads. The isolation is resolved at the first
    load (``required`` without bwrap refuses then), so a verb that loads nothing asks nothing."""

    def __init__(self, isolation: Isolation | str = "auto") -> None:
        self._asked = isolation
        self._isolation = isolation if isinstance(isolation, Isolation) else None
        self._lock = threading.Lock()
        self._children: list[_Child] = []

    @property
    def isolation(self) -> Isolation:
        if self._isolation is None:
            self._isolation = isolation_for(str(self._asked))
        return self._isolation

    @property
    def unrestricted(self) -> bool:
        """Whether skops types beyond the allow-list may load: where the child is isolated, or
        where isolation was explicitly turned off."""
        return self.isolation.mechanism is not None or self._asked == "off"

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

    def load(
        self,
        path: Path,
        task: str = "classification",
        code_paths: tuple[Path, ...] = (),
        example: Any = None,
    ) -> RemoteModel:
        """A training command's model (``.joblib``, ``.pkl``, ``.skops``, XGBoost's or
        LightGBM's own file, or an MLflow pyfunc folder), loaded in a child of its own with the
        local modules of ``code_paths`` importable there; ``example`` rows show a pyfunc
        model's answers."""
        return self._load(path, task, path.is_dir(), code_paths, example)

    def load_folder(self, folder: Path) -> RemoteModel:
        """The native model of an MLflow model folder (sklearn or pyfunc flavor, its
        ``code/`` importable) or a package folder."""
        return self._load(folder, "", True)

    def _load(
        self,
        path: Path,
        task: str,
        folder: bool,
        code_paths: tuple[Path, ...] = (),
        example: Any = None,
    ) -> RemoteModel:
        isolation = self.isolation
        if isolation.mechanism is None and self._asked != "off":
            _undumpable()
        # In the sandbox the files travel over the pipe (the child sees none of the host's
        # temporary folders, and writes where mlops-ci never reads); else it reads them. The
        # code always does: it lands in a folder of the child's own, never the project.
        sandboxed = isolation.mechanism is not None
        values = {
            "files": model_files(path, folder) if sandboxed else None,
            "code": code_files(code_paths) if code_paths else None,
            "example": example,
        }
        child = _Child(isolation)
        try:
            args = {"path": None if sandboxed else str(path.resolve()), "name": path.name,
                    "task": task, "folder": folder, "unrestricted": self.unrestricted}  # fmt: skip
            answer = child.request("load", args, values)
            handle = child.expect(answer, "handle", int, "load")
            info = child.expect(answer, "info", dict, "load")
            model = RemoteModel(child, handle, info, path)
        except BaseException:
            child.close()
            raise
        with self._lock:
            self._children = [c for c in self._children if c._proc is not None] + [child]
        return model


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


def installed(said: list[Any]) -> tuple[str, ...]:
    """The names a model's child said it imports that are distributions installed here, by
    their installed names (the child's word is a claim: nothing else goes further)."""
    from importlib import metadata

    from mlops_ci.model.environment import NAME

    found: dict[str, str] = {}
    for name in said[:MAX_DISTRIBUTIONS]:
        if not isinstance(name, str) or not NAME.match(name):
            continue
        try:
            dist = metadata.distribution(name)
        except (metadata.PackageNotFoundError, ValueError):
            continue
        real = str(dist.metadata["Name"] or name)
        found.setdefault(real.lower(), real)
    return tuple(sorted(found.values(), key=str.lower))


class ModelFailed(MlopsError):
    """The model raised something other than a ValueError (its own failure, named)."""


class RemoteModel:
    """A model loaded in the runner's child, with the face of a fitted scikit-learn model."""

    def __init__(self, child: _Child, handle: int, info: dict[str, Any], source: Path):
        self.child = child
        self.handle = handle
        self.info = info
        self.source = source
        try:
            self.model_kind: str = str(info.get("kind") or "")
            self.model_is_classifier = info.get("classifier") is True
            said = info.get("distributions") or []
            # what the model imports: only distributions installed here reach the serving
            # image's requirements.txt (pinned by mlops-ci, never as the child wrote them)
            self.distributions: tuple[str, ...] = installed(said if isinstance(said, list) else [])
            self.type_name = str(info.get("type", "?"))[:200]
            dtypes = info.get("dtypes") or {}
            # {column: category | bool}: what the fitted model records beyond number and text
            self.model_dtypes: dict[str, str] = {
                str(k): str(v) for k, v in dict(dtypes).items() if v in ("category", "bool")
            }
            # a category column's categories, in the order the model was fitted with them
            self.model_categories: dict[str, list[Any]] = {
                str(k): [wire._unscalar(c) for c in v]
                for k, v in dict(info.get("categories") or {}).items()
                if str(k) in self.model_dtypes and isinstance(v, list)
            }
            if info.get("n_features") is not None:
                self.n_features_in_ = int(info["n_features"])
            if info.get("columns") is not None:
                self.feature_names_in_ = np.asarray([str(c) for c in info["columns"]], object)
            if info.get("classes") is not None:
                self.classes_ = np.asarray([wire._unscalar(c) for c in info["classes"]])
        except (TypeError, ValueError, AttributeError, wire.WireError):
            child.close()
            raise RunnerError("the model runner described the model in a shape of its own; "
                              "stopped") from None  # fmt: skip

    def __repr__(self) -> str:
        return f"<{self.type_name} in the model runner>"

    def __getattr__(self, name: str) -> Any:
        # Only what the model has: a regressor has no predict_proba (is_classifier asks).
        if name == "predict_proba" and self.__dict__.get("info", {}).get("has_proba"):
            return self._predict_proba
        raise AttributeError(name)

    def _call(self, method: str, x: Any, *keys: str) -> list[Any]:
        """The model's answer to ``method`` on ``x``: arrays (or None) with a row per row."""
        answer = self.child.request("call", {"handle": self.handle, "method": method}, {"x": x})
        rows = len(next(iter(x.values()), ())) if isinstance(x, dict) else len(x)
        out: list[Any] = []
        for key in keys:
            value = answer.get(key)
            if value is None and key == "labels":
                out.append(None)
                continue
            array = self.child.expect(answer, key, np.ndarray, method)
            if array.ndim == 0 or array.shape[0] != rows:
                self.child.close()
                raise RunnerError(
                    f"the model runner answered {method} with {array.shape} for {rows} rows; "
                    "stopped"
                )
            out.append(array)
        return out

    def predict(self, x: Any) -> Any:
        return self._call("predict", x, "y")[0]

    def _predict_proba(self, x: Any) -> Any:
        return self._call("predict_proba", x, "y")[0]

    def model_outputs(self, x: Any) -> tuple[Any, Any]:
        """``convert.native_outputs`` of the model, computed beside it: (labels, scores)."""
        labels, scores = self._call("outputs", x, "labels", "scores")
        return labels, scores

    def to_onnx(self, features: Any, target_opset: int | None) -> tuple[bytes, str]:
        """skl2onnx's conversion, made in the child: the ONNX bytes and their input layout."""
        answer = self.child.request(
            "convert", {"handle": self.handle, "target_opset": target_opset},
            {"features": features},
        )  # fmt: skip
        onnx = self.child.expect(answer, "onnx", bytes, "convert")
        return onnx, str(self.child.expect(answer, "layout", str, "convert"))

    def save_mlflow(self, dest: Path, signature: Any, pip_requirements: list[str]) -> list[str]:
        """MLflow's sklearn flavor of the model, saved by the child and written in ``dest`` (a
        folder of this process's: the files come over the pipe); the skops types trusted."""
        answer = self.child.request(
            "save_mlflow",
            {"handle": self.handle, "pip_requirements": pip_requirements,
             "signature": signature.to_dict() if signature is not None else None},
        )  # fmt: skip
        files = self.child.expect(answer, "files", dict, "save_mlflow")
        trusted = self.child.expect(answer, "trusted", list, "save_mlflow")
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()):
            self.child.close()
            raise RunnerError("the model runner answered save_mlflow without its files")
        write_files(dest, files, "the model's MLflow folder")
        return [str(t) for t in trusted]

    def peak_rss_mb(self) -> float:
        """The child's peak resident memory (VmHWM), in MiB: the memory probe of a model (a
        child holds one model)."""
        answer = self.child.request("peak_rss", {})
        return int(self.child.expect(answer, "kib", int, "peak_rss")) / 1024

    def timings(
        self, features: Any, single_row_runs: int, batch_sizes: tuple[int, ...]
    ) -> dict[str, Any]:
        """Latency and throughput measured in the child, beside the model."""
        answer = self.child.request(
            "measure",
            {"handle": self.handle, "single_row_runs": single_row_runs,
             "batch_sizes": list(batch_sizes)},
            {"features": features},
        )  # fmt: skip
        try:
            throughput = answer["throughput"]
            return {
                **{p: float(answer[p]) for p in ("p50", "p95", "p99")},
                "throughput": {int(b): float(v) for b, v in throughput.items()},
            }
        except (KeyError, TypeError, ValueError, AttributeError):
            self.child.close()
            raise RunnerError("the model runner answered measure in a shape of its own") from None
