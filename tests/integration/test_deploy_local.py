"""deploy with the local target: real `mlops-ci serve` processes, real HTTP, a real MLflow
registry, and a bounded load running while the split moves."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from onnx import TensorProto, helper

from mlops_ci.config.types import Config, load_config
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.model.integrity import MANIFEST, digest, file_manifest
from mlops_ci.records import write_json_atomic
from mlops_ci.registry.mlflow import MlflowRegistry
from mlops_ci.steps.approve import approve
from mlops_ci.steps.compare import compare
from mlops_ci.steps.delete_version import delete_version
from mlops_ci.steps.deploy import deploy
from mlops_ci.steps.package import package
from mlops_ci.steps.register import register
from mlops_ci.steps.report import report
from mlops_ci.steps.rollback import rollback
from mlops_ci.steps.status import status
from mlops_ci.steps.train import train
from mlops_ci.targets.local import LocalTarget
from tests.support.serve_helpers import free_port
from tests.support.store import copy_example

pytestmark = pytest.mark.slow
ROW = [5.1, 3.5, 1.4, 0.2]


# environments of their own (a short rollout) for the deploys killed or signalled on the way and
# for undeploy: they share the story's trained versions rather than training their own
KILLED_ENVS = (
    "kill-canary",
    "kill-full",
    "term-canary",
    "serve-killed",
    "rollback-killed",
    "undeploy",
)
SHORT = "{steps: [25, 100], window_seconds: 0.8, probe_requests: 10, min_requests: 5}"
SHADOWED = {"shadowed": "{version: '1', percent: 100}"}  # v1 is packaged for real


def deploy_yaml(staging: int, production: int) -> str:
    rollout = "{steps: [25, 100], window_seconds: 1.5, probe_requests: 20, min_requests: 10}"
    return (
        (
            "  profile: {single_row_runs: 20, batch_sizes: [1]}\n"
            "deploy:\n"
            f"  staging: {{target: local, port: {staging}, rollout: {rollout}}}\n"
            f"  production: {{target: local, port: {production}, approval: required,\n"
            f"               rollout: {rollout}}}\n"
        )
        + "".join(
            f"  {env}: {{target: local, port: {free_port()}, rollout: {SHORT}}}\n"
            for env in KILLED_ENVS
        )
        + "".join(
            f"  {env}: {{target: local, port: {free_port()}, rollout: {SHORT}, shadow: {shadow}}}\n"
            for env, shadow in SHADOWED.items()
        )
    )


def broken_package(reg: MlflowRegistry, config: Config, version: str, run_id: str) -> None:
    """Record, as `package` would, an ONNX model that fails on every request (a Reshape to 7x7
    of a 1x4 input): a version that answers 5xx."""
    nodes = [
        helper.make_node("Reshape", ["input", "shape"], ["probabilities"]),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "broken",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, None]),
        ],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [7, 7])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "model.onnx").write_bytes(model.SerializeToString())
        files = file_manifest(folder)
        write_json_atomic(
            folder / MANIFEST,
            {
                "name": config.model.name,
                "version": version,
                "run_id": run_id,
                "format": "onnx",
                "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
                "files": files,
                "sha256": digest(files),
            },
        )
        reg.log_artifacts(run_id, folder, f"package/v{version}")
    reg.set_version_tags(
        config.model.name,
        version,
        {"mlops.package.sha256": digest(files), "mlops.package.complete": "true"},
    )


@dataclass
class Story:
    config: Config
    reg: MlflowRegistry
    good: list[str] = field(default_factory=list)  # versions packaged for real
    broken: str = ""


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("GITHUB_ACTIONS", raising=False)
        project = copy_example(tmp_path_factory.mktemp("deploy") / "iris")
        cfg = project / "mlops.yaml"
        cfg.write_text(cfg.read_text() + deploy_yaml(free_port(), free_port()))
        config = load_config(project)
        reg = MlflowRegistry.for_config(config)
        result = Story(config, reg)
        for c in (1.0, 0.5, 0.3):
            run = train(config, reg, overrides={"C": c})
            compare(config, reg, run.run_id)
            version = register(config, reg, run.run_id, force=True).version
            if c == 0.3:
                broken_package(reg, config, version, run.run_id)
                result.broken = version
            else:
                package(config, reg, version, build=False)
                result.good.append(version)
        yield result
        for env in config.deploy.values():
            LocalTarget(config, env).stop()


class Load:
    """Single-row requests in a thread until stopped (at most 90 s): statuses and versions."""

    def __init__(self, url: str) -> None:
        self.url, self.results = url, Counter[tuple[int, str]]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 90
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.post("/score", json={"inputs": [ROW]})
                    self.results[(r.status_code, r.json().get("model_version", "-"))] += 1
                except httpx.HTTPError as err:
                    self.results[(0, type(err).__name__)] += 1
                time.sleep(0.005)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_healthy_rollout_under_load_reaches_100_and_moves_the_alias(story: Story) -> None:
    config, reg = story.config, story.reg
    v1, v2 = story.good
    first = deploy(config, reg, v1, "staging", "ci-bot", {})
    assert first.status == "serving" and first.steps[0].passed
    assert reg.get_version_by_alias("iris-classifier", "staging").version == v1  # type: ignore[union-attr]
    with Load(first.url or "") as load:
        time.sleep(0.5)
        second = deploy(config, reg, v2, "staging", "ci-bot", {})
        time.sleep(0.3)
    assert second.status == "serving" and second.previous == v1
    assert [s.percent for s in second.steps] == [25.0, 100.0] and all(
        s.passed for s in second.steps
    )
    assert second.steps[0].new.requests >= 20 and second.steps[0].new.server_errors == 0
    assert reg.get_version_by_alias("iris-classifier", "staging").version == v2  # type: ignore[union-attr]
    failed = {k: n for k, n in load.results.items() if k[0] != 200}
    assert not failed, failed
    served = {version for (_, version) in load.results}
    assert served == {v1, v2} and sum(load.results.values()) > 100

    text = report(config, reg, "ml").markdown
    assert f"Deploy: v{v2} → staging (local): **serving**" in text
    assert f"| 25% | v{v1} 75%, v{v2} 25% | " in text and "✅ healthy |" in text

    tags = reg.get_version("iris-classifier", v2).tags
    assert tags["mlops.deploy.staging.status"] == "serving"
    assert (
        tags["mlops.deploy.staging.by"] == "ci-bot" and tags["mlops.deploy.staging.previous"] == v1
    )
    assert reg.get_version("iris-classifier", v1).tags["mlops.deploy.staging.status"] == "replaced"
    (row,) = [s for s in status(config, reg) if s.env == "staging"]
    assert row.version == v2 and row.live_split == {v1: 0.0, v2: 100.0}

    back = rollback(config, reg, "staging", "oncall", "latency regression")
    assert (back.from_version, back.to_version) == (v2, v1)
    assert reg.get_version_by_alias("iris-classifier", "staging").version == v1  # type: ignore[union-attr]
    answer = httpx.post(f"{first.url}/score", json={"inputs": [ROW]}).json()
    assert answer["model_version"] == v1


def test_broken_version_is_rolled_back_at_its_first_step(story: Story) -> None:
    config, reg = story.config, story.reg
    before = reg.get_version_by_alias("iris-classifier", "staging")
    assert before is not None
    target = LocalTarget(config, config.deploy["staging"])
    if target.process() is None:
        deploy(config, reg, before.version, "staging", "ci-bot", {})
    result = deploy(config, reg, story.broken, "staging", "ci-bot", {})
    assert result.status == "rolled_back" and len(result.steps) == 1
    step = result.steps[0]
    assert step.percent == 25.0 and not step.passed and step.new.server_errors >= 20
    assert any("5xx rate" in reason for reason in step.reasons)
    assert reg.get_version_by_alias("iris-classifier", "staging").version == before.version  # type: ignore[union-attr]
    traffic = target.traffic()
    assert traffic["weights"] == {before.version: 100.0} and story.broken not in traffic["versions"]
    answer = httpx.post(f"{result.url}/score", json={"inputs": [ROW]})
    assert answer.status_code == 200 and answer.json()["model_version"] == before.version
    assert (
        reg.get_version("iris-classifier", story.broken).tags["mlops.deploy.staging.status"]
        == "rolled_back"
    )


def test_production_needs_an_approval_which_is_recorded(story: Story) -> None:
    config, reg = story.config, story.reg
    v1 = story.good[0]
    with pytest.raises(GateFailed, match="gate approval: 'production' needs an approval"):
        deploy(config, reg, v1, "production", "ci-bot", {})
    assert LocalTarget(config, config.deploy["production"]).process() is None
    approve(config, reg, v1, "production", "release-manager", "CAB-1234 signed off")
    result = deploy(config, reg, v1, "production", "ci-bot", {})
    assert result.status == "serving"
    assert result.approval is not None and result.approval.by == "release-manager"
    gate = {g.name: g for g in result.gates}["approval"]
    assert gate.passed and "CAB-1234" in gate.detail
    assert reg.get_version_by_alias("iris-classifier", "production").version == v1  # type: ignore[union-attr]
    text = report(config, reg, "ml").markdown
    assert "Approved by **release-manager**" in text and "✅ gate approval" in text


def test_a_deployed_version_cannot_be_deleted(story: Story) -> None:
    config, reg = story.config, story.reg
    serving = reg.get_version_by_alias("iris-classifier", "staging")
    assert serving is not None
    with pytest.raises(GateFailed, match=rf"v{serving.version} is deployed in staging"):
        delete_version(config, reg, serving.version)
    assert reg.get_version("iris-classifier", serving.version).version == serving.version
    assert delete_version(config, reg, story.broken) == story.broken  # rolled back: not in use


def qa_project(
    tmp_path: Path, rollout: str, cs: list[float]
) -> tuple[Config, MlflowRegistry, list[str], int]:
    """The example with a local environment `qa` of its own (a free port) and one registered,
    packaged version per value of C: (config, registry, versions, port)."""
    project = copy_example(tmp_path / "iris")
    port = free_port()
    (project / "mlops.yaml").write_text(
        (project / "mlops.yaml").read_text()
        + "  profile: {single_row_runs: 20, batch_sizes: [1]}\n"
        + f"deploy:\n  qa: {{target: local, port: {port}, rollout: {rollout}}}\n"
    )
    config = load_config(project)
    reg = MlflowRegistry.for_config(config)
    versions = []
    for c in cs:
        run = train(config, reg, overrides={"C": c})
        compare(config, reg, run.run_id)
        versions.append(register(config, reg, run.run_id, force=True).version)
        package(config, reg, versions[-1], build=False)
    return config, reg, versions, port


def test_undeploy_stops_the_local_process_records_who_and_why_and_keeps_the_alias(
    story: Story,
) -> None:
    from mlops_ci.steps.undeploy import undeploy

    config, reg, env, version = story.config, story.reg, "undeploy", story.good[0]
    target = LocalTarget(config, config.deploy[env])
    assert deploy(config, reg, version, env, "ci-bot", {}).status == "serving"
    pid = target.process().pid  # type: ignore[union-attr]
    result = undeploy(config, reg, env, "oncall", "end of the trial", {})
    assert result.status == "undeployed" and result.versions == [version]
    assert result.stopped == [f"`mlops-ci serve` process {pid} on {target.url}"]
    assert target.process() is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{target.url}/v2/health/ready", timeout=2)
    tags = reg.get_version(config.model.name, version).tags
    assert tags[f"mlops.deploy.{env}.status"] == "undeployed"
    assert tags[f"mlops.deploy.{env}.undeployed.by"] == "oncall"
    assert tags[f"mlops.deploy.{env}.undeployed.reason"] == "end of the trial"
    assert reg.get_version_by_alias(config.model.name, env).version == version  # type: ignore[union-attr]
    again = undeploy(config, reg, env, "oncall", "twice", {})
    assert again.status == "nothing" and not again.tagged
    assert reg.get_version(config.model.name, version).tags[
        f"mlops.deploy.{env}.undeployed.reason"
    ] == ("end of the trial")


def test_a_serving_process_killed_mid_canary_is_restarted_with_the_previous_version(
    story: Story,
) -> None:
    """kill -9 of `mlops-ci serve` during a canary step: the deploy sees the dead endpoint,
    restarts it with the version it served, records a rollback (exit 1 in the CLI) and the
    alias stays."""
    config, reg, env, (v1, v2) = story.config, story.reg, "serve-killed", story.good
    target = LocalTarget(config, config.deploy[env])
    assert deploy(config, reg, v1, env, "ci-bot", {}).status == "serving"
    killed: list[int] = []

    def kill_at_the_first_step(line: str) -> None:
        if line.startswith("step 25 %") and not killed:
            proc = target.process()
            assert proc is not None
            os.kill(proc.pid, signal.SIGKILL)
            killed.append(proc.pid)

    result = deploy(config, reg, v2, env, "ci-bot", {}, progress=kill_at_the_first_step)
    assert killed and result.status == "rolled_back" and result.split == {v1: 100.0}
    assert "died during the rollout" in (result.note or "")
    proc = target.process()
    assert proc is not None and proc.pid != killed[0]
    answer = httpx.post(f"{result.url}/score", json={"inputs": [ROW]})
    assert answer.status_code == 200 and answer.json()["model_version"] == v1
    assert reg.get_version_by_alias(config.model.name, env).version == v1  # type: ignore[union-attr]
    tags = reg.get_version(config.model.name, v2).tags
    assert tags[f"mlops.deploy.{env}.status"] == "rolled_back"
    audit = (config.root / ".mlops" / "deploy-audit.jsonl").read_text().splitlines()
    assert '"status": "rolled_back"' in audit[-1] and f'"env": "{env}"' in audit[-1]
    (row,) = [r for r in status(config, reg) if r.env == env]
    assert row.state == "serving" and row.running is True and list(row.live_split or {}) == [v1]
    os.kill(proc.pid, signal.SIGKILL)  # now nothing serves what the registry says serves
    deadline = time.monotonic() + 10
    while target.process() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    (row,) = [r for r in status(config, reg) if r.env == env]
    assert row.state == "serving" and row.running is False and row.live_split is None


def test_rollback_after_a_deploy_killed_mid_canary(story: Story) -> None:
    """The deploy itself dies at the 25 % step (as kill -9 of the CLI would leave it): v2
    still takes a quarter of the traffic and v1, the alias's version, replaced nothing, so
    there is no 'previous' to go back to; rollback puts v1 back at 100 % and records it."""
    config, reg, env, (v1, v2) = story.config, story.reg, "rollback-killed", story.good
    target = LocalTarget(config, config.deploy[env])

    class Killed(BaseException):
        """The deploy process stopping dead where it stands."""

    def die_at_the_first_step(line: str) -> None:
        if line.startswith("step 25 %"):
            raise Killed

    assert deploy(config, reg, v1, env, "ci-bot", {}).status == "serving"
    with pytest.raises(Killed):
        deploy(config, reg, v2, env, "ci-bot", {}, progress=die_at_the_first_step)
    assert target.traffic()["weights"] == {v1: 75.0, v2: 25.0}
    back = rollback(config, reg, env, "oncall", "the deploy died")
    assert (back.from_version, back.to_version) == (v2, v1)
    traffic = target.traffic()
    assert traffic["weights"] == {v1: 100.0} and v2 not in traffic["versions"]
    assert reg.get_version_by_alias(config.model.name, env).version == v1  # type: ignore[union-attr]
    tags = reg.get_version(config.model.name, v2).tags
    assert tags[f"mlops.deploy.{env}.status"] == "rolled_back"
    assert tags[f"mlops.deploy.{env}.rolled_back.by"] == "oncall"


# --- a real `mlops-ci deploy` killed or signalled mid-rollout, then the next verb ---------


def mlops_ci(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlops_ci", *args, "-c", str(project / "mlops.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def deploy_until(
    project: Path, version: str, env: str, marker: str, sig: int, meanwhile: Any = None
) -> tuple[int, str, int]:
    """`mlops-ci deploy` in a process of its own, sent ``sig`` as soon as it prints a line
    starting with ``marker`` (after calling ``meanwhile(pid)``): (exit code, output, pid)."""
    argv = ["deploy", "--version", version, "--env", env, "-c", str(project / "mlops.yaml")]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlops_ci", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(marker):
            if meanwhile is not None:
                meanwhile(proc.pid)
            proc.send_signal(sig)
            break
    rest, _ = proc.communicate(timeout=60)
    output = "".join(lines) + rest
    assert any(line.startswith(marker) for line in lines), output
    return proc.returncode, output, proc.pid


def serving_v1_alone(story: Story, env: str) -> LocalTarget:
    """``env``'s endpoint serving v1 alone, its alias on v1."""
    v1 = story.good[0]
    target = LocalTarget(story.config, story.config.deploy[env])
    first = mlops_ci(story.config.root, "deploy", "--version", v1, "--env", env)
    assert first.returncode == 0, first.stderr
    assert target.traffic()["weights"] == {v1: 100.0}
    mode = stat.S_IMODE((target.folder / "service.json").stat().st_mode)
    assert mode == 0o600, f"service.json (the admin token) is {oct(mode)}"
    return target


def records(story: Story, env: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(deploy.json, the audit log's last line, the journal) of ``env``."""
    root = story.config.root / ".mlops"
    audit = json.loads((root / "deploy-audit.jsonl").read_text().splitlines()[-1])
    journal = json.loads((root / "deploy" / env / "journal.json").read_text())
    return json.loads((root / "deploy.json").read_text()), audit, journal


def alias_of(story: Story, env: str) -> str | None:
    found = story.reg.get_version_by_alias(story.config.model.name, env)
    return found.version if found else None


@pytest.mark.timeout(240)
def test_a_deploy_killed_mid_canary_is_named_and_reverted_by_status(story: Story) -> None:
    env, (v1, v2) = "kill-canary", story.good
    target = serving_v1_alone(story, env)
    code, output, pid = deploy_until(story.config.root, v2, env, "step 25 %: split", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert target.traffic()["weights"] == {v1: 75.0, v2: 25.0}, "what the dead deploy left"

    shown = mlops_ci(story.config.root, "status")
    assert shown.returncode == 0, shown.stderr
    said = f"status reverted the deploy a killed process left at step 25 % (pid {pid}"
    assert said in shown.stdout and f"v{v1} back at 100 %" in shown.stdout
    traffic = target.traffic()
    assert traffic["weights"] == {v1: 100.0} and v2 not in traffic["versions"]
    assert alias_of(story, env) == v1
    deployed, audit, journal = records(story, env)
    for record in (deployed, audit):
        assert (record["env"], record["version"], record["status"], record["resolved"]) == (
            env,
            v2,
            "rolled_back",
            "reverted",
        )
        assert record["split"] == {v1: 100.0}
    assert (journal["state"], journal["resolved"], journal["pid"]) == ("killed", "reverted", pid)
    tags = story.reg.get_version(story.config.model.name, v2).tags
    assert tags[f"mlops.deploy.{env}.status"] == "rolled_back"
    answer = httpx.post(f"{target.url}/score", json={"inputs": [ROW]})
    assert answer.status_code == 200 and answer.json()["model_version"] == v1


@pytest.mark.timeout(240)
def test_a_deploy_killed_in_the_100_percent_window_is_finished_by_the_next_deploy(
    story: Story,
) -> None:
    env, (v1, v2) = "kill-full", story.good
    target = serving_v1_alone(story, env)
    code, _, pid = deploy_until(story.config.root, v2, env, "step 100 %: split", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert target.traffic()["weights"] == {v1: 0.0, v2: 100.0} and alias_of(story, env) == v1

    again = mlops_ci(story.config.root, "deploy", "--version", v2, "--env", env)
    assert again.returncode == 0, again.stderr
    assert f"finished the deploy a killed process left at 100 % (pid {pid}" in again.stdout
    assert "unchanged" not in again.stdout
    assert alias_of(story, env) == v2, "the alias moved"
    assert target.traffic()["weights"] == {v1: 0.0, v2: 100.0}
    deployed, audit, journal = records(story, env)
    for record in (deployed, audit):
        assert (record["version"], record["status"], record["resolved"]) == (
            v2,
            "serving",
            "finished",
        )
        assert record["alias"] == env and record["previous"] == v1
    assert (journal["state"], journal["resolved"]) == ("killed", "finished")
    name = story.config.model.name
    assert story.reg.get_version(name, v2).tags[f"mlops.deploy.{env}.status"] == "serving"
    assert story.reg.get_version(name, v1).tags[f"mlops.deploy.{env}.status"] == "replaced"


@pytest.mark.timeout(240)
def test_sigterm_mid_canary_reverts_records_and_exits_143_and_a_second_deploy_waits_its_turn(
    story: Story,
) -> None:
    env, (v1, v2) = "term-canary", story.good
    target = serving_v1_alone(story, env)
    refused: list[str] = []

    def second_deploy(pid: int) -> None:
        with pytest.raises(InputError) as err:
            deploy(story.config, story.reg, v2, env, "someone-else", {})
        refused.append(str(err.value))

    code, output, pid = deploy_until(
        story.config.root, v2, env, "step 25 %: split", signal.SIGTERM, second_deploy
    )
    assert refused and f"a deploy of v{v2} to {env} is running (pid {pid}," in refused[0]
    assert code == 143, output
    assert f"stopped by SIGTERM during the rollout (moving): v{v1} back at 100 %" in output
    assert "Traceback" not in output
    traffic = target.traffic()
    assert traffic["weights"] == {v1: 100.0} and v2 not in traffic["versions"]
    assert alias_of(story, env) == v1
    deployed, audit, journal = records(story, env)
    for record in (deployed, audit):
        assert (record["version"], record["status"], record["interrupted"]) == (
            v2,
            "rolled_back",
            "SIGTERM",
        )
    assert (journal["state"], journal["interrupted"]) == ("rolled_back", "SIGTERM")


@pytest.mark.timeout(240)
def test_a_deploy_leaves_its_shadow_scoring_every_request(story: Story) -> None:
    assert story.good == ["1", "2"]
    config, reg = story.config, story.reg
    approve(config, reg, "2", "shadowed", "alice", "shadow test")
    result = deploy(config, reg, "2", "shadowed", "ci", {})
    assert result.status == "serving" and result.shadow == {"version": "1", "percent": 100.0}
    target = LocalTarget(config, config.deploy["shadowed"])
    traffic = target.traffic()
    assert traffic["weights"] == {"2": 100.0} and set(traffic["versions"]) == {"1", "2"}
    assert traffic["shadow"]["version"] == "1" and traffic["shadow"]["percent"] == 100.0
    assert shadow_rows(target.url, "1", "mlops_shadow_rows_total") == 20
    target.unload("1")  # the shadow's version: its shadowing ends first, then it goes
    traffic = target.traffic()
    assert set(traffic["versions"]) == {"2"} and traffic["shadow"] is None


def shadow_rows(url: str, version: str, metric: str) -> float:
    """Send 20 single-row requests (all answered 200 by v2), then wait until the shadow's
    ``metric`` reaches 20 rows (its process starts with its first rows), at most 60 s."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(20):
            answer = client.post("/score", json={"inputs": [ROW]})
            assert answer.status_code == 200 and answer.headers["x-model-version"] == "2"
        deadline, counted = time.monotonic() + 60, 0.0
        while counted < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in client.get("/metrics").text.splitlines()
                if line.startswith(metric + "{") and f'version="{version}"' in line
            )
    return counted
