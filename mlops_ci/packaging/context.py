"""The Docker build context of a model version: Dockerfile, pinned requirements, model files,
and a wheel of the mlops-ci that packaged it.

The image installs that wheel without its dependencies, and only what serving imports beside
it: the model runtime (onnxruntime, or scikit-learn for ``package.onnx: false``), the ASGI
stack and the few libraries the serve command reads its settings with. Versions are pinned
from the training run's environment lock (what the model was trained and checked with), else
from this environment, so `docker build .` needs nothing but the public package index.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from mlops_ci import __version__
from mlops_ci.model.environment import canonical
from mlops_ci.model.features import FeatureSchema
from mlops_ci.model.integrity import MANIFEST, digest, file_manifest
from mlops_ci.model.tensors import TensorSchema
from mlops_ci.packaging.wheel import build_wheel, wheel_name
from mlops_ci.provenance import sha256_file
from mlops_ci.records import write_json_atomic, write_text_atomic

MODEL_DIR = "/opt/model"
# What serving needs whatever the model: a requirements file, and an image layer, of its own.
SERVING_FILE = "serving-requirements.txt"
FRONT_STATE_DIR = "/var/lib/mlops-ci/front"
# Distributions the serving process imports: always, then by model format.
SERVING_RUNTIME = (
    "fastapi",
    "uvicorn",
    "uvloop",
    "httptools",
    "orjson",
    "prometheus-client",
    "click",
    "PyYAML",
    "jsonschema",
)
GPU_RUNTIME = "onnxruntime-gpu[cuda,cudnn]"  # package.accelerator: cuda
SERVING_REQUIREMENTS = {
    "onnx": ("onnxruntime", "numpy"),
    # cloudpickle: what MLflow pickles a model skops cannot hold with (model.pkl)
    "sklearn": ("scikit-learn", "numpy", "scipy", "joblib", "skops", "pandas", "cloudpickle"),
}


@dataclass(frozen=True)
class ContextSpec:
    name: str
    version: str
    run_id: str
    format: str  # onnx | sklearn
    base_image: str
    port: int
    revision: str | None
    source: str | None
    features: tuple[str, ...] = ()  # input columns in model order, for scoring by column name
    schema: FeatureSchema | None = None  # their kinds (number | string)
    layout: str = "matrix"  # ONNX inputs: one float tensor (matrix) or one per column
    classes: tuple[str, ...] = ()  # a classifier's labels, in the order of its probabilities
    frameworks: tuple[str, ...] = ()  # distributions a native model needs (xgboost, lightgbm)
    wheel: str = field(default_factory=wheel_name)  # the mlops-ci wheel the image installs
    serve_env: tuple[tuple[str, str], ...] = ()  # `serve` settings the image carries (batching)
    providers: tuple[str, ...] = ("CPUExecutionProvider",)  # execution providers, best first
    accelerator: str = "cpu"  # cpu | cuda: onnxruntime-gpu with NVIDIA's libraries from PyPI
    tensors: TensorSchema | None = None  # layout tensors: the graph's inputs (issue 43)


def pinned_requirements(
    fmt: str, lock: str | None, frameworks: tuple[str, ...] = (), accelerator: str = "cpu"
) -> list[str]:
    """``name==version`` for the serving distributions and what the native model needs
    (``frameworks``: what loading it imported, a pyfunc folder's own requirements): from the
    lock, else this environment (unpinned where neither has it). ``accelerator`` cuda serves
    ONNX with onnxruntime-gpu of the same version, with NVIDIA's CUDA and cuDNN runtime
    libraries from PyPI (its ``cuda`` and ``cudnn`` extras), so the base image stays the
    same Python; the host needs NVIDIA's driver and container toolkit."""
    locked = {}
    for line in (lock or "").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            locked[canonical(name)] = version
    lines = []
    wanted: dict[str, str] = {}  # each distribution once, in this order
    for dist in (
        *SERVING_REQUIREMENTS[fmt],
        *(frameworks if fmt == "sklearn" else ()),
        *SERVING_RUNTIME,
    ):
        wanted.setdefault(canonical(dist), dist)
    for dist in wanted.values():
        if canonical(dist) in locked:
            lines.append(f"{dist}=={locked[canonical(dist)]}")
            continue
        try:
            lines.append(f"{dist}=={metadata.version(dist)}  # not in the training lock")
        except metadata.PackageNotFoundError:
            lines.append(f"{dist}  # neither in the training lock nor installed here")
    if accelerator == "cuda" and fmt == "onnx":
        lines = [_on_gpu(line) for line in lines]
    return lines


def _on_gpu(line: str) -> str:
    """onnxruntime's requirement line as onnxruntime-gpu's, same version."""
    name, sep, rest = line.partition("==")
    if canonical(name.split()[0]) != "onnxruntime":
        return line
    return f"{GPU_RUNTIME}{sep}{rest}" if sep else f"{GPU_RUNTIME}{line[len(name.split()[0]) :]}"


def dockerfile(spec: ContextSpec, model_digest: str) -> str:
    labels = {
        "org.opencontainers.image.title": spec.name,
        "org.opencontainers.image.version": spec.version,
        "org.opencontainers.image.description": f"{spec.name} v{spec.version} served by mlops-ci",
        "org.opencontainers.image.revision": spec.revision or "unknown",
        "org.opencontainers.image.source": spec.source or "unknown",
        "io.mlops-ci.model.name": spec.name,
        "io.mlops-ci.model.version": spec.version,
        "io.mlops-ci.model.format": spec.format,
        "io.mlops-ci.accelerator": spec.accelerator,
        "io.mlops-ci.providers": ",".join(spec.providers),
        "io.mlops-ci.model.sha256": model_digest,
        "io.mlops-ci.run-id": spec.run_id,
    }
    label_lines = " \\\n      ".join(f'{k}="{v}"' for k, v in labels.items())
    health = (
        '["python", "-c", "import urllib.request; '
        f"urllib.request.urlopen('http://127.0.0.1:{spec.port}/v2/health/ready', timeout=2)\"]"
    )
    # The default isolation, auto: bubblewrap is neither installed in the image nor able to
    # make its namespaces under an engine's default seccomp profile, so a native model runs
    # in the model runner's child as a plain process, said in one line, and the server makes
    # itself undumpable first (PR_SET_DUMPABLE 0): the image runs as a non-root user, so the
    # child cannot read the server's /proc environ (the admin token) or memory. The container
    # is the boundary for the rest.
    serve = (
        f'["mlops-ci", "serve", "--model-dir", "{MODEL_DIR}", '
        f'"--host", "0.0.0.0", "--port", "{spec.port}"]'
    )
    serve_env = "".join(f" \\\n    {k}={v}" for k, v in spec.serve_env)
    return f"""\
# Generated by mlops-ci {__version__} for {spec.name} v{spec.version}; build with
#   docker build -t IMAGE .
FROM {spec.base_image}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    MLOPS_MODEL_DIR={MODEL_DIR}{serve_env}

# The serving user; the folder is where `mlops-ci front` keeps its routes (a volume). HAProxy
# (the distribution's package) carries the requests of a docker environment's front; a base
# without apt or apk serves without it (only `mlops-ci front` needs it, and says so). Not
# pinned: the version is the base's distribution's (>= 2.4 is needed: bookworm has 2.6).
# hadolint ignore=DL3008,DL3018
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mlops \\
 && mkdir -p {FRONT_STATE_DIR} && chown 10001 {FRONT_STATE_DIR} \\
 && if command -v apt-get >/dev/null; then \\
      apt-get update -q && apt-get install -y -q --no-install-recommends haproxy \\
      && apt-get clean && rm -rf /var/lib/apt/lists/*; \\
    elif command -v apk >/dev/null; then apk add --no-cache haproxy; fi

WORKDIR /opt/app
# The largest layers: first what serving needs whatever the model (the engine's build cache
# shares it between versions and models), then what this model needs beside it (a no-op
# without); nothing that differs by version comes before them.
COPY {SERVING_FILE} ./
RUN pip install --no-cache-dir -r {SERVING_FILE}
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
# The wheel of the mlops-ci that packaged this model; its dependencies are requirements.txt.
COPY {spec.wheel} ./
RUN pip install --no-cache-dir --no-deps {spec.wheel} && rm {spec.wheel}

# Read-only for the serving user; `mlops-ci serve` checks manifest.json before loading.
COPY model/ {MODEL_DIR}/

# Last: the labels name the version, and a step after them would be built again for each one.
LABEL {label_lines}

USER 10001
EXPOSE {spec.port}
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \\
  CMD {health}
CMD {serve}
"""


def write_context(
    folder: Path, spec: ContextSpec, model_files: Path, lock: str | None
) -> tuple[Path, str]:
    """Write the context afresh; returns (folder, digest of the model files' manifest)."""
    if folder.exists():
        shutil.rmtree(folder)
    model = folder / "model"
    shutil.copytree(model_files, model)
    wheel = build_wheel(folder)
    manifest = file_manifest(model)
    model_digest = digest(manifest)
    write_json_atomic(
        model / MANIFEST,
        {
            "name": spec.name,
            "version": spec.version,
            "run_id": spec.run_id,
            "format": spec.format,
            "features": list(spec.features),
            "schema": (spec.schema or FeatureSchema.numeric(spec.features)).to_list(),
            "layout": spec.layout,
            "classes": list(spec.classes),
            "providers": list(spec.providers),
            **({"tensors": spec.tensors.to_list()} if spec.tensors is not None else {}),
            "runtime": {"wheel": spec.wheel, "sha256": sha256_file(wheel)},
            "files": manifest,
            "sha256": model_digest,
        },
    )
    write_text_atomic(
        folder / "requirements.txt",
        "\n".join(pinned_requirements(spec.format, lock, spec.frameworks, spec.accelerator)) + "\n",
    )
    write_text_atomic(
        folder / SERVING_FILE,
        "\n".join(pinned_requirements(spec.format, lock, (), spec.accelerator)) + "\n",
    )
    write_text_atomic(
        folder / ".dockerignore",
        f"*\n!Dockerfile\n!requirements.txt\n!{SERVING_FILE}\n!model/\n!{wheel.name}\n",
    )
    write_text_atomic(folder / "Dockerfile", dockerfile(spec, model_digest))
    return folder, model_digest
