"""The model runner's child: the only place a model file a training command wrote is loaded.

Started by :class:`mlops_ci.runner.client.ModelRunner` (in the sandbox where there is one, from
an allow-listed environment), it reads requests on its standard input and answers on what was
its standard output (``wire`` messages: JSON and raw arrays, never pickle). The model's own
prints go to standard error, so they cannot corrupt an answer. One request at a time; a
failure of the model is an answer naming it, never the end of the child.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import IO, Any

from mlops_ci.runner import wire
from mlops_ci.runner.wire import FAILED, INPUT, REFUSED, TRAINING, VALUES

OPERATIONS = ("load", "call", "convert", "save_mlflow", "measure", "peak_rss")


class Worker:
    def __init__(self) -> None:
        self.models: dict[int, Any] = {}
        self.code: dict[int, Path | None] = {}  # the model.code_paths a model was loaded with

    def load(self, args: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """The model from ``path`` (no sandbox), or from the ``files`` sent over the pipe,
        written first into a private folder of the child's; the ``code`` it needs (its
        ``model.code_paths``) always comes over the pipe, into a folder put on this child's
        import path (MLflow's ``code_paths``: no PYTHONPATH). The ``example`` rows, when sent,
        show a pyfunc model's answers (labels or class probabilities)."""
        from mlops_ci.evaluation.predictions import outputs_of, several_outputs
        from mlops_ci.model import environment
        from mlops_ci.model.files import load_folder, load_user_model
        from mlops_ci.model.pyfunc import PyfuncModel
        from mlops_ci.runner.files import write_files

        here = Path(tempfile.mkdtemp(prefix="model-"))
        code = values.get("code")
        if code:
            write_files(here / "code", code, "model.code_paths")
            sys.path.insert(0, str(here / "code"))
        files = values.get("files")
        if files is not None:
            if args["folder"]:
                write_files(here / "model", files, "the model folder")
                path = here / "model"
            else:
                write_files(here, files, "the model file")
                path = here / str(args["name"])
        else:
            path = Path(args["path"])
        unrestricted = bool(args["unrestricted"])
        environment.loaders(path)  # what loading imports of its own is not the model's need
        before = environment.snapshot()
        if args["folder"]:
            model = load_folder(path, unrestricted, str(args["task"]))
        else:
            model = load_user_model(path, args["task"], unrestricted)
        count = outputs_of(model)
        if count > 1:  # refused here, before anything is asked of it, on every verb
            who = "the model" if args["folder"] else "mlops.yaml: train.outputs.model"
            raise several_outputs(f"{who} ({path.name}, a {type(model).__name__})", count)
        needs = []
        if isinstance(model, PyfuncModel):
            example = values.get("example")
            model.probe(example if example is not None else model.example())
            needs = ["mlflow-skinny", *environment.folder_requirements(path)]
        needs += environment.imported_distributions(before)
        handle = len(self.models) + 1
        self.models[handle] = model
        self.code[handle] = here / "code" if code else None
        return {"handle": handle, "info": describe(model, needs)}

    def call(self, args: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        model = self.models[args["handle"]]
        x = values["x"]
        method = args["method"]
        if method == "outputs":
            from mlops_ci.packaging import convert

            out = convert.native_outputs(model, x)
            return {"labels": out.labels, "scores": out.scores}
        if method not in ("predict", "predict_proba"):
            raise ValueError(f"no method {method!r}")
        return {"y": np.asarray(getattr(model, method)(x))}

    def convert(self, args: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        from mlops_ci.model.pyfunc import PyfuncModel
        from mlops_ci.packaging import convert

        if isinstance(self.models[args["handle"]], PyfuncModel):
            raise convert.ConversionRefused(
                "an MLflow pyfunc model is Python code, which ONNX does not hold"
            )
        converted = convert.convert_sklearn(
            self.models[args["handle"]], values["features"], args["target_opset"]
        )
        return {"onnx": converted.onnx, "layout": converted.layout}

    def save_mlflow(self, args: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """The model saved as MLflow's sklearn flavor in a private folder, sent back as its
        files (regular files only): skops when every type it holds is on the allow-list
        (``files.allowed_type``), so the MLmodel never tells a loader to trust
        ``builtins.eval``; else a pickle, which claims no safety at all (and mlops-ci loads
        only in a child). The ``model.code_paths`` it was loaded with go into the folder's
        ``code/`` (MLflow's ``code_paths``); a pyfunc model's folder is sent as it was written,
        its MLmodel told what it answers (``model.pyfunc.META``)."""
        import mlflow.sklearn
        import skops.io
        from mlflow.models import ModelSignature

        from mlops_ci.model.files import allowed_type

        model = self.models[args["handle"]]
        signature = args.get("signature")
        dest = Path(tempfile.mkdtemp(prefix="mlflow-")) / "model"
        from mlops_ci.model.pyfunc import PyfuncModel, save_copy

        if isinstance(model, PyfuncModel):
            save_copy(model, dest, ModelSignature.from_dict(signature) if signature else None)
            from mlops_ci.runner.files import read_files

            return {"trusted": [], "refused": [], "files": read_files(dest)}
        named = list(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
        refused = [n for n in named if not allowed_type(n)]
        code = self.code.get(args["handle"])
        mlflow.sklearn.save_model(
            model,
            str(dest),
            signature=ModelSignature.from_dict(signature) if signature else None,
            pip_requirements=args["pip_requirements"],
            serialization_format=(
                mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
                if refused
                else mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS
            ),
            skops_trusted_types=None if refused else named,
            code_paths=sorted(str(p) for p in code.iterdir()) if code is not None else None,
        )
        from mlops_ci.runner.files import read_files

        files = read_files(dest)
        return {"trusted": [] if refused else named, "refused": refused, "files": files}

    def measure(self, args: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """Latency and throughput timed here, beside the model (no pipe in the figures)."""
        from mlops_ci.packaging.profile import timings

        model = self.models[args["handle"]]
        predict = getattr(model, "predict_proba", None) or model.predict
        return timings(predict, values["features"], args["single_row_runs"], args["batch_sizes"])

    def peak_rss(self, args: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        with open("/proc/self/status") as fh:
            return {"kib": next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))}


def describe(model: Any, needs: list[str] | None = None) -> dict[str, Any]:
    """What the parent may know of the model without holding it (a dict of JSON values);
    ``needs``: the distributions loading it imported (``model.environment``)."""
    import numpy as np

    from mlops_ci.evaluation.predictions import kind_of
    from mlops_ci.model.environment import prune
    from mlops_ci.model.features import fitted_categories, fitted_dtypes, trained_columns
    from mlops_ci.packaging import convert
    from mlops_ci.packaging.frameworks import distributions

    classifier = convert.is_classifier(model)
    classes = getattr(model, "classes_", None) if classifier else None
    n_features = getattr(model, "n_features_in_", None)
    columns = trained_columns(model)
    return {
        "type": f"{type(model).__module__}.{type(model).__qualname__}",
        "kind": kind_of(model),
        "classifier": classifier,
        "has_proba": callable(getattr(model, "predict_proba", None)),
        "classes": None
        if classes is None
        else [wire._scalar(c, "classes_") for c in np.asarray(classes).tolist()],
        "columns": list(columns) if columns is not None else None,
        "n_features": int(n_features) if isinstance(n_features, (int, np.integer)) else None,
        "distributions": prune(sorted({*distributions(model), *(needs or ())})),
        "dtypes": dict(fitted_dtypes(model)),
        "categories": {
            str(name): [wire._scalar(c, "categories") for c in found]
            for name, found in fitted_categories(model).items()
        },
    }


def _error(err: BaseException) -> dict[str, Any]:
    from mlops_ci.errors import InputError, TrainingError
    from mlops_ci.packaging.convert import ConversionRefused

    kind = FAILED
    if isinstance(err, TrainingError):
        kind = TRAINING
    elif isinstance(err, ConversionRefused):
        kind = REFUSED
    elif isinstance(err, InputError):
        kind = INPUT
    elif isinstance(err, ValueError):
        kind = VALUES
    said = str(err).strip()
    return {
        "error": said.splitlines()[0][:2000] if said else type(err).__name__,
        "kind": kind,
        "type": type(err).__name__,
        "hint": getattr(err, "hint", None),
    }


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    worker = Worker()
    while True:
        try:
            header, values = wire.receive(requests)
        except EOFError:
            return
        op = header.get("op")
        try:
            if op not in OPERATIONS:
                raise ValueError(f"no operation {op!r}")
            handler = getattr(Worker, op)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = handler(worker, header.get("args", {}), values)
            wire.send(answers, {"ok": True}, result)
        except Exception as err:  # the model's failure is an answer, named
            if os.environ.get("MLOPS_CI_RUNNER_DEBUG"):
                traceback.print_exc()
            wire.send(answers, {"ok": False, **_error(err)}, {})


def main() -> None:
    """Take the channel (stdin, stdout) for the messages; what the model prints goes to stderr."""
    requests = os.fdopen(os.dup(0), "rb", buffering=1 << 16)
    answers = os.fdopen(os.dup(1), "wb", buffering=1 << 16)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(requests, answers)


if __name__ == "__main__":
    main()
