"""mlops.yaml as a file: read (UTF-8, YAML with the limits of a setting), checked against its
JSON Schema and its meaning with every problem at its line, and filled with the schema's
defaults. ``config`` builds the typed settings from what this returns.

The schema is the single definition of the file: its ``default`` values fill missing keys here,
so no default is written twice. Every problem is reported as ``FILE:LINE: path.to.key: message``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import posixpath
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlops_ci.errors import ConfigError
from mlops_ci.metrics import COST_METRICS, METRICS
from mlops_ci.model import providers

CONFIG_NAME = "mlops.yaml"
# Unknown keys reported one by one (with their line and a did-you-mean); the rest are counted.
MAX_UNKNOWN_KEYS = 20
# Rule keys that compare the candidate with production; the directional ones need to know
# whether more is better (max_increase and max_decrease say which way themselves).
AGAINST_PRODUCTION = (
    "must", "min_absolute_change", "min_relative_change", "max_increase", "max_decrease",
)  # fmt: skip
DIRECTIONAL = ("must", "min_absolute_change", "min_relative_change")


@cache
def _schema_text() -> str:
    return (
        resources.files("mlops_ci.config").joinpath("schema/mlops.schema.json").read_text("utf-8")
    )


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of mlops.yaml, read from the package."""
    loaded: dict[str, Any] = json.loads(_schema_text())
    return loaded


def find_config(path: str | Path | None) -> Path:
    """The mlops.yaml to use: the given file, or mlops.yaml inside the given/current folder."""
    candidate = Path(path) if path else Path.cwd()
    if candidate.is_dir():
        candidate = candidate / CONFIG_NAME
    try:
        return candidate.resolve()
    except (RuntimeError, OSError) as err:  # a symlink loop (RuntimeError before Python 3.13)
        raise ConfigError([f"{candidate}: cannot be resolved: {err}"]) from None


def read_checked(file: Path) -> tuple[dict[str, Any], bool]:
    """The settings of ``file``, checked and filled with the schema's defaults, and whether the
    file names train.outputs.metrics itself; ConfigError with one line per problem."""
    if not file.is_file():
        raise ConfigError(
            [f"{file.name}: no such file ({file})"],
            hint="run `mlops-ci init` to write a starter mlops.yaml",
        )
    text = _read_text(file)
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        kind = "" if isinstance(err, yaml.constructor.ConstructorError) else "YAML syntax error: "
        raise ConfigError([f"{file.name}:{line}: {kind}{problem}"], file=file) from None
    except RecursionError:
        raise ConfigError([f"{file.name}:1: nested too deeply to be a config"], file=file) from None
    if not isinstance(data, dict):
        raise ConfigError(
            [f"{file.name}:1: the file must be a YAML mapping of keys to values"], file=file
        )
    # Problems are found without line numbers first; only a file that has some is parsed again
    # into nodes to locate them. A text already found valid is not validated again.
    marker = _valid_marker(text)
    try:
        if (marker is None or not marker.exists()) and _schema_problems(data, None, file.name):
            raise ConfigError(_schema_problems(data, _nodes(text), file.name), file=file)
        filled = with_defaults(data, schema())
        if _semantic_problems(filled, None, file.name):
            raise ConfigError(_semantic_problems(filled, _nodes(text), file.name), file=file)
    except RecursionError:
        raise ConfigError([f"{file.name}:1: nested too deeply to be a config"], file=file) from None
    if marker is not None and not marker.exists():
        _remember(marker)
    return filled, _metrics_output_set(data)


def _metrics_output_set(data: dict[str, Any]) -> bool:
    """Whether the file names train.outputs.metrics itself (not the schema's default)."""
    train = data.get("train")
    outputs = train.get("outputs") if isinstance(train, dict) else None
    return isinstance(outputs, dict) and "metrics" in outputs


def _nodes(text: str) -> yaml.Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _valid_marker(text: str) -> Path | None:
    """Where the fact "this exact text passed this exact schema" is kept: a file named by the
    digest of both (and of this mlops-ci's version), in the user's cache folder. Validation
    imports jsonschema, a tenth of a second every verb would otherwise pay on every run.
    MLOPS_CI_CACHE_DIR, then XDG_CACHE_HOME/mlops-ci, then ~/.cache/mlops-ci; none when the
    home folder is unknown."""
    from mlops_ci import __version__

    root = os.environ.get("MLOPS_CI_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or (
            str(Path.home() / ".cache") if "HOME" in os.environ else ""
        )
        if not base:
            return None
        root = os.path.join(base, "mlops-ci")
    digest = hashlib.sha256()
    for part in (__version__, _schema_text(), text):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return Path(root) / "valid-configs" / digest.hexdigest()


def _remember(marker: Path) -> None:
    """Best effort: a cache that cannot be written only means validating again next time."""
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass


def _read_text(file: Path) -> str:
    """The file as UTF-8 text; anything else is one line naming the line of the first bad byte."""
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(
            [f"{file.name}: cannot be read: {err.strerror or err}"], file=file
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            [f"{file.name}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save it as UTF-8"],
            file=file,
        ) from None


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing at their line what no mlops.yaml value can be: integers
    of more than 30 digits (Python refuses 4,300), non-finite numbers (.nan, .inf), tagged
    values PyYAML cannot build (``!!int abc``), and a key given twice in one mapping (PyYAML
    keeps the last silently: a rollout's second ``steps`` would quietly replace the first)."""


def _construct_map(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<``: explicit keys override it
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # unhashable: construct_mapping names it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key '{str(key)[:60]}' is given twice in one mapping (first on line {first})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    digits = len(str(node.value).replace("_", "").lstrip("+-"))
    if digits > 30:
        raise yaml.constructor.ConstructorError(
            None, None, f"a {digits}-digit integer is beyond any setting", node.start_mark
        )
    try:
        return int(loader.construct_yaml_int(node))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{str(node.value)[:40]}' is not an integer", node.start_mark
        ) from None


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    try:
        value = float(loader.construct_yaml_float(node))
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None, None, f"'{str(node.value)[:40]}' is not a number", node.start_mark
        ) from None
    if not math.isfinite(value):
        raise yaml.constructor.ConstructorError(
            None, None, f"'{node.value}' is not a finite number", node.start_mark
        )
    return value


def validate_data(data: dict[str, Any], name: str = CONFIG_NAME) -> list[str]:
    """Problems of an already-parsed config (no line numbers known): used by `init` tests."""
    node = yaml.compose(yaml.safe_dump(data), Loader=yaml.SafeLoader)
    problems = _schema_problems(data, node, name)
    if not problems:
        problems = _semantic_problems(with_defaults(data, schema()), node, name)
    return problems


def _schema_problems(data: Any, node: yaml.Node | None, name: str) -> list[str]:
    from jsonschema import Draft202012Validator

    found: list[tuple[int, str]] = []
    unknown = 0
    for error in Draft202012Validator(schema()).iter_errors(data):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in known:
                    unknown += 1
                    if unknown > MAX_UNKNOWN_KEYS:
                        continue  # counted, not each located: a huge file stays linear
                    line = node_line(node, [*path, key], key_line=True)
                    found.append(
                        (line, f"{_dotted([*path, key])}: unknown key{_suggest(str(key), known)}")
                    )
        elif error.validator == "required":
            missing = str(error.message).split("'")[1]
            line = node_line(node, path)
            found.append((line, f"{_dotted([*path, missing])}: required key is missing"))
        else:
            friendly = (
                error.schema.get("x-pattern-message") if isinstance(error.schema, dict) else None
            )
            if friendly and error.validator in ("pattern", "type"):
                shown = f"{_dotted(path)}: {str(error.instance)[:60]!r} {friendly}"
                found.append((node_line(node, path), shown))
            elif error.validator == "maxLength":
                shown = f"{_dotted(path)}: {len(error.instance):,} characters is too long (at most "
                found.append((node_line(node, path), shown + f"{error.validator_value:,})"))
            else:
                message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
                found.append((node_line(node, path), f"{_dotted(path)}: {message}"))
    problems = [f"{name}:{line}: {message}" for line, message in sorted(found)]
    if unknown > MAX_UNKNOWN_KEYS:
        problems.append(f"{name}: ... and {unknown - MAX_UNKNOWN_KEYS} more unknown keys")
    return problems


def _semantic_problems(data: dict[str, Any], node: yaml.Node | None, name: str) -> list[str]:
    """Checks the schema cannot express: cross-references between keys."""
    problems: list[str] = []
    pipeline, command = data["pipeline"], data["train"].get("command")
    if pipeline["stages"] and pipeline["dvc"] is not None:
        line = node_line(node, ["pipeline", "dvc"])
        problems.append(f"{name}:{line}: pipeline: give stages or dvc, not both")
    if command is not None and (pipeline["stages"] or pipeline["dvc"] is not None):
        line = node_line(node, ["train", "command"])
        problems.append(
            f"{name}:{line}: train.command: the pipeline's training stage has the command; "
            "remove train.command (or the pipeline)"
        )
    for env_name, env in data["deploy"].items():
        if env.get("shadow") and env["target"] != "local":
            line = node_line(node, ["deploy", env_name, "shadow"])
            problems.append(
                f"{name}:{line}: deploy.{env_name}.shadow: the {env['target']} target cannot "
                "mirror requests yet (only target: local; or `mlops-ci serve --shadow`)"
            )
    evaluated = data["evaluate"]["metrics"]
    task = data["model"]["task"]
    for i, metric in enumerate(evaluated):
        spec = METRICS.get(metric)
        if spec is not None and spec.task != task:
            fitting = ", ".join(m for m, s in METRICS.items() if s.task == task)
            problems.append(
                f"{name}:{node_line(node, ['evaluate', 'metrics', i])}: evaluate.metrics.{i}: "
                f"'{metric}' is a {spec.task} metric; model.task is {task} (use {fitting})"
            )
    declared = data["train"]["metrics"]
    primary = data["gate"]["primary_metric"]
    if primary is not None and primary not in evaluated:
        line = node_line(node, ["gate", "primary_metric"])
        where = f"{name}:{line}: gate.primary_metric"
        problems.append(f"{where}: '{primary}' is not in evaluate.metrics {evaluated}")
    for i, rule in enumerate(data["gate"]["rules"]):
        line = node_line(node, ["gate", "rules", i])
        against = any(k in rule for k in AGAINST_PRODUCTION)
        if not any(k in rule for k in ("min", "max")) and not against:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: rule for '{rule['metric']}' sets no bound "
                f"(min, max, {', '.join(AGAINST_PRODUCTION)})"
            )
        metric = rule["metric"]
        if rule.get("slice") == "all" and metric in COST_METRICS:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: slice: all does not apply to '{metric}', a "
                "cost of the whole model, not of a group of rows"
            )
        elif rule.get("slice") == "all" and metric not in evaluated:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: slice: all needs a metric of evaluate.metrics "
                f"(each slice is scored with them), not '{metric}'"
            )
        if rule.get("slice") == "all" and not data["evaluate"]["slices"]:
            problems.append(
                f"{name}:{line}: gate.rules.{i}: slice: all, but evaluate.slices names no column"
            )
        spec = METRICS.get(metric)
        known = [*evaluated, *COST_METRICS]
        if spec is not None and spec.task != task:
            problems.append(
                f"{name}:{line}: gate.rules.{i}.metric: '{metric}' is a {spec.task} metric; "
                f"model.task is {task}"
            )
        elif spec is None and metric not in COST_METRICS and metric not in declared:
            close = difflib.get_close_matches(metric, [*declared, *known], n=1, cutoff=0.8)
            guess = f"; did you mean '{close[0]}'?" if close else ""
            if declared:
                problems.append(
                    f"{name}:{line}: gate.rules.{i}.metric: '{metric}' is neither a known "
                    f"metric, a cost ({', '.join(COST_METRICS)}) nor in train.metrics "
                    f"{declared}{guess}"
                )
            elif close and close[0] in COST_METRICS:
                problems.append(
                    f"{name}:{line}: gate.rules.{i}.metric: '{metric}' is not a cost compare "
                    f"measures{guess} (a metric your training logs: declare it in train.metrics)"
                )
        if (
            against
            and metric not in METRICS
            and metric not in COST_METRICS
            and "greater_is_better" not in rule
            and any(k in rule for k in DIRECTIONAL)
        ):
            problems.append(
                f"{name}:{line}: gate.rules.{i}.greater_is_better: needed to compare "
                f"'{rule['metric']}' with production (not a known metric)"
            )
    for section in ("package", "serve"):
        for i, provider in enumerate(data[section].get("providers") or ()):
            for problem in providers.unknown([provider]):
                line = node_line(node, [section, "providers", i])
                problems.append(f"{name}:{line}: {section}.providers.{i}: {problem}")
    problems += _outputs_read(data, node, name)
    for env_name, env in data["deploy"].items():
        steps = env.get("rollout", {}).get("steps", [])
        mode = env.get("rollout", {}).get("mode", "canary")
        where = f"{name}:{node_line(node, ['deploy', env_name, 'rollout', 'steps'])}"
        if steps and any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            problems.append(f"{where}: deploy.{env_name}.rollout.steps: must increase, got {steps}")
        elif steps and mode == "canary" and steps[-1] != 100:
            problems.append(
                f"{where}: deploy.{env_name}.rollout.steps: a canary rollout ends at 100, "
                f"got {steps[-1]:g}"
            )
    return problems


def _outputs_read(data: dict[str, Any], node: yaml.Node | None, name: str) -> list[str]:
    """train never deletes or overwrites a file that is not its own output: an output path
    (train.outputs.model, train.outputs.metrics) that is, holds or lies inside a path read
    (one of train.inputs, evaluate.data) is refused at the output's line."""
    reads = [(["train", "inputs", i], p) for i, p in enumerate(data["train"]["inputs"])]
    reads.append((["evaluate", "data"], data["evaluate"]["data"]))
    problems = []
    for key, output in data["train"]["outputs"].items():
        out = _plain_path(output)
        for keys, read in reads:
            path = _plain_path(read)
            if out == path:
                how = "is also"
            elif path == "." or out.startswith(path + "/"):
                how = "is inside"
            elif out == "." or path.startswith(out + "/"):
                how = "holds"
            else:
                continue
            at = ["train", "outputs", key]
            line = node_line(node, at if _written(node, at) else keys)  # else the default's
            problems.append(
                f"{name}:{line}: train.outputs.{key}: '{output}' {how} {_dotted(keys)} "
                f"'{read}' (line {node_line(node, keys)}): train never deletes or overwrites "
                "a file that is not its own output; give the outputs paths of their own"
            )
    return problems


def _written(node: yaml.Node | None, path: list[str]) -> bool:
    """Whether the file itself holds the key at ``path`` (not the schema's default)."""
    for part in path:
        if not isinstance(node, yaml.MappingNode):
            return False
        node = next((v for k, v in node.value if k.value == part), None)
    return node is not None


def _plain_path(path: str) -> str:
    return posixpath.normpath(path.replace("\\", "/"))


def node_line(node: yaml.Node | None, path: list[Any], key_line: bool = False) -> int:
    """1-based line of the YAML node at ``path`` (or of its deepest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = key if key_line and part == path[-1] else value
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node = child
        line = child.start_mark.line + 1
    return line


def _dotted(path: list[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (known keys: {', '.join(known)})"


def with_defaults(data: Any, sub: dict[str, Any]) -> Any:
    """Copy of ``data`` with every missing key that the schema gives a default for filled in."""
    extra = sub.get("additionalProperties")
    if isinstance(data, dict) and ("properties" in sub or isinstance(extra, dict)):
        out = dict(data)
        for key, prop in sub.get("properties", {}).items():
            if key not in out and "default" in prop:
                out[key] = copy.deepcopy(prop["default"])
            if key in out:
                out[key] = with_defaults(out[key], prop)
        if isinstance(extra, dict):  # a map of named entries, e.g. deploy environments
            for key in set(out) - set(sub.get("properties", {})):
                out[key] = with_defaults(out[key], extra)
        return out
    if isinstance(data, list) and "items" in sub:
        return [with_defaults(item, sub["items"]) for item in data]
    return data


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
