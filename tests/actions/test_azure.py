"""Azure Pipelines: the task (Node handler, task.json, extension), ##vso logging commands, the
Azure Repos pull-request thread over a loopback server, and the pipeline templates."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_ci.ci import (
    emit_outputs,
    error_annotations,
    mask_secret,
    warning_annotation,
    write_summary,
)
from mlops_ci.ci.azure import AzureReposClient, AzureSettings
from mlops_ci.cli import deployment as cli_deployment
from mlops_ci.cli import project as cli_project
from mlops_ci.cli import registry as cli_registry
from mlops_ci.cli import reporting as cli_report
from mlops_ci.config.types import load_config
from mlops_ci.errors import ConfigError, GateFailed
from mlops_ci.steps.init import init_project
from tests.support.azure_server import AzureState, azure_devops_server

ROOT = Path(__file__).resolve().parents[2]
TASK = ROOT / "actions" / "azure-pipelines"
TEMPLATES = sorted((ROOT / "templates" / "azure-pipelines").glob("*.yml"))
AZURE = {"TF_BUILD": "True", "BUILD_SOURCESDIRECTORY": str(ROOT)}
TOKEN = "azdo-system-access-token-SECRET"


# --- ##vso logging commands, exactly as Azure documents them --------------------------------


def test_outputs_issues_summary_and_secrets_as_azure_documents_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    emit_outputs({"verdict": "pass", "run_id": "abc123"}, AZURE)
    assert capsys.readouterr().out.splitlines() == [
        "##vso[task.setvariable variable=verdict;isoutput=true;]pass",
        "##vso[task.setvariable variable=runId;isoutput=true;]abc123",
    ]
    config_error = ConfigError(
        ["mlops.yaml:7: gate.rules.0.metric: 'f9' is not one of ['accuracy']"],
        file=ROOT / "examples" / "iris" / "mlops.yaml",
    )
    assert error_annotations(config_error, AZURE) == [
        "##vso[task.logissue type=error;sourcepath=examples/iris/mlops.yaml;linenumber=7;]"
        "gate.rules.0.metric: 'f9' is not one of ['accuracy']"
    ]
    gate = GateFailed("verdict fail; 100% sure", hint="see report")
    assert error_annotations(gate, AZURE) == [  # in the message only %, CR and LF are escaped
        "##vso[task.logissue type=error;]verdict fail; 100%AZP25 sure (hint: see report)"
    ]
    assert warning_annotation("two\nlines", AZURE) == [
        "##vso[task.logissue type=warning;]two%0Alines"
    ]
    assert mask_secret("MLOPS_ADMIN_TOKEN", "s3cr3t", AZURE) == [
        "##vso[task.setvariable variable=MLOPS_ADMIN_TOKEN;issecret=true;]s3cr3t"
    ]
    assert write_summary("# report\n", {**AZURE, "AGENT_TEMPDIRECTORY": str(tmp_path)})
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("##vso[task.uploadsummary]") and line.endswith(".md")
    assert Path(line.removeprefix("##vso[task.uploadsummary]")).read_text() == "# report\n"


# --- the Node handler ----------------------------------------------------------------------


@pytest.fixture
def fake_cli(tmp_path: Path) -> Path:
    """An `mlops-ci` on PATH that records the argument list it was given."""
    record = tmp_path / "argv.json"
    script = tmp_path / "bin" / "mlops-ci"
    script.parent.mkdir()
    script.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"if sys.argv[1:] != ['--version']:\n"
        f"    json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
        f"    json.dump(sorted(os.environ), open({str(record) + '.env'!r}, 'w'))\n"
        "sys.exit(0 if sys.argv[1:] == ['--version'] or 'fail' not in sys.argv else 3)\n"
    )
    script.chmod(0o755)
    return record


def test_node_handler_passes_inputs_without_a_shell(
    fake_cli: Path, task_dir: Path, tmp_path: Path
) -> None:
    hostile = 'my "dir" $(touch PWNED) `id` ; rm -rf x'
    env = {
        **os.environ,
        "PATH": f"{fake_cli.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "INPUT_COMMAND": "report",
        "INPUT_CONFIG": hostile,
        "INPUT_ARGUMENTS": '--pr\nauto\n  --workflow  \nit\'s $(whoami) "quoted"\n',
        "SECRET_MLFLOW_TRACKING_PASSWORD": "p4ss",
    }
    done = subprocess.run(
        ["node", str(task_dir / "mlopsci" / "index.js")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(fake_cli.read_text()) == [
        "report",
        "--config",
        hostile,
        "--pr",
        "auto",
        "--workflow",
        'it\'s $(whoami) "quoted"',
    ]
    assert not (tmp_path / "PWNED").exists()
    seen_env = json.loads(Path(f"{fake_cli}.env").read_text())  # task-lib took them out
    assert not [k for k in seen_env if k.startswith(("INPUT_", "SECRET_"))], seen_env

    env["INPUT_COMMAND"] = "rm -rf /"
    refused = subprocess.run(
        ["node", str(task_dir / "mlopsci" / "index.js")],
        env=env,
        cwd=tmp_path,  # task-lib writes its .taskkey where it runs
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert (
        "##vso[task.issue type=error;source=TaskInternal;]input command: 'rm -rf /' is not"
        in refused.stdout
    )
    assert "##vso[task.complete result=Failed;]" in refused.stdout
    env.update({"INPUT_COMMAND": "train", "INPUT_ARGUMENTS": "fail"})
    failed = subprocess.run(
        ["node", str(task_dir / "mlopsci" / "index.js")],
        env=env,
        cwd=tmp_path,  # task-lib writes its .taskkey where it runs
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 3
    assert "##vso[task.complete result=Failed;]mlops-ci train exited with 3" in failed.stdout


def test_task_json_declares_what_the_handler_and_the_cli_use() -> None:
    from mlops_ci.cli import cli

    task = json.loads((TASK / "mlopsci" / "task.json").read_text())
    for key in (
        "id",
        "name",
        "friendlyName",
        "description",
        "author",
        "version",
        "instanceNameFormat",
        "inputs",
        "execution",
    ):
        assert task[key], key
    verbs = set(task["inputs"][0]["options"]) - {"setup"}  # setup: the handler only installs
    assert verbs <= set(cli.commands), verbs - set(cli.commands)
    handler = (TASK / "mlopsci" / "index.js").read_text()
    assert all(f"'{verb}'" in handler for verb in verbs)
    assert task["execution"]["Node20_1"]["target"] == "index.js"
    manifest = json.loads((TASK / "vss-extension.json").read_text())
    (contribution,) = manifest["contributions"]
    assert contribution["properties"]["name"] == "mlopsci" and (TASK / "mlopsci").is_dir()


def test_the_task_installs_the_wheel_it_ships_and_only_that_one(
    task_dir: Path, tmp_path: Path
) -> None:
    """No package index has mlops-ci: the task installs the wheel packaged beside it (with uv,
    else pip), after checking its sha256 against wheel.json, and refuses one that does not
    match."""
    from mlops_ci.packaging.wheel import ship

    task = tmp_path / "mlopsci"
    shutil.copytree(task_dir / "mlopsci", task)
    wheel = ship(task)
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    fake_python = bin_dir / "python3"  # records each call; "installs" mlops-ci when asked to
    fake_python.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1] == '-c': print('/opt/agent/python3'); sys.exit(0)\n"
        "if sys.argv[1:4] == ['-m', 'pip', 'install'] and sys.argv[-1] == 'uv':\n"
        "    sys.exit(int(os.environ.get('NO_UV', '0')))\n"
        f"cli = {str(bin_dir / 'mlops-ci')!r}\n"
        "open(cli, 'w').write('#!/bin/sh\\necho mlops-ci 0.1.0\\n'); os.chmod(cli, 0o755)\n"
    )
    fake_python.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin",
        "INPUT_COMMAND": "setup",
        "INPUT_EXTRAS": "serve",
    }
    node = shutil.which("node") or "node"

    def setup(**extra: str) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
        calls.unlink(missing_ok=True)
        (bin_dir / "mlops-ci").unlink(missing_ok=True)
        done = subprocess.run(
            [node, str(task / "index.js")],
            env={**env, **extra},
            cwd=tmp_path,  # task-lib writes its .taskkey where it runs
            capture_output=True,
            text=True,
        )
        seen = (
            [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
        )
        return done, seen

    done, seen = setup()
    assert done.returncode == 0, done.stdout + done.stderr
    assert seen == [
        ["-c", "import sys; print(sys.executable)"],
        ["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "uv"],
        ["-m", "uv", "pip", "install", "--python", "/opt/agent/python3", f"{wheel}[serve]"],
    ]  # uv, into the agent's own interpreter, named by its path
    assert "mlops-ci 0.1.0" in done.stdout

    done, seen = setup(NO_UV="1")  # uv cannot be had: pip installs the same wheel
    assert done.returncode == 0, done.stdout + done.stderr
    assert seen[-1] == ["-m", "pip", "install", "--disable-pip-version-check", f"{wheel}[serve]"]

    done, seen = setup(BUILD_REPOSITORY_PROVIDER="GitHub")  # report --pr posts with PyGithub
    assert done.returncode == 0, done.stdout + done.stderr
    assert seen[-1][-1] == f"{wheel}[serve,github]"

    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    refused, seen = setup()
    assert refused.returncode == 2 and "not installing it" in refused.stdout
    assert seen == []  # nothing ran: neither pip nor uv


def test_task_json_is_valid_against_the_task_schema() -> None:
    """The rules of Microsoft's tasks.schema.json (see the schema's $comment), which an
    invalid task.json (e.g. an output variable named run_id) breaks."""
    import jsonschema

    schema = json.loads((Path(__file__).parent / "azure_task.schema.json").read_text())
    task = json.loads((TASK / "mlopsci" / "task.json").read_text())
    jsonschema.validate(task, schema)
    bad = {**task, "outputVariables": [{"name": "run_id"}]}
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.validate(bad, schema)
    from mlops_ci.ci import azure_output_name

    declared = {v["name"] for v in task["outputVariables"]}
    assert {azure_output_name(k) for k in emitted_outputs()} == declared


def emitted_outputs() -> set[str]:
    """The output names the CLI emits: the string keys of the dicts it hands to emit_outputs
    (read off its source, so a new output without its declaration fails the test above)."""
    source = "\n".join(p.read_text() for p in sorted((ROOT / "mlops_ci" / "cli").glob("*.py")))
    keys: set[str] = set()
    for call in re.finditer(r"emit_outputs\(|outputs = \{|return \{", source):
        end = (
            source.find(")", call.end())
            if call.group().startswith("emit")
            else source.find("}", call.end())
        )
        keys |= set(re.findall(r'"([a-z][a-z_-]*)": ', source[call.start() : end + 1]))
    assert {"run_id", "verdict", "deploy-status", "report-path", "comment-url"} <= keys, keys
    return keys


def test_tfx_packages_the_extension_offline(task_dir: Path, tmp_path: Path) -> None:
    tfx = os.environ.get("TFX_BIN") or shutil.which("tfx")
    if not tfx:
        pytest.skip("tfx-cli is not installed (.ci/run installs it from npm and sets TFX_BIN)")
    shutil.copytree(task_dir, tmp_path / "ext")
    from mlops_ci.packaging.wheel import ship

    wheel = ship(tmp_path / "ext" / "mlopsci")
    done = subprocess.run(
        [
            tfx,
            "extension",
            "create",
            "--manifest-globs",
            "vss-extension.json",
            "--output-path",
            str(tmp_path / "out.vsix"),
            "--no-prompt",
        ],
        cwd=tmp_path / "ext",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    import zipfile

    names = zipfile.ZipFile(tmp_path / "out.vsix").namelist()
    assert f"mlopsci/{wheel.name}" in names and "mlopsci/wheel.json" in names, names
    assert "mlopsci/node_modules/azure-pipelines-task-lib/task.js" in names  # what index.js needs


# --- the pull-request thread on Azure Repos --------------------------------------------------


@pytest.fixture
def azure_server() -> Iterator[tuple[str, AzureState]]:
    with azure_devops_server() as served:
        yield served


def test_pull_request_thread_is_created_once_then_updated_and_429_retried(
    azure_server: tuple[str, AzureState],
) -> None:
    url, state = azure_server
    settings = AzureSettings(TOKEN, url, "ml project", "repo-1", "TfsGit")
    client = AzureReposClient(settings, backoff=0)
    marker = "<!-- mlops-ci:report model=iris workflow=ci -->"
    first = client.upsert_thread(12, f"{marker}\nfirst", marker)
    state.fail_next = [429, 503]
    second = client.upsert_thread(12, f"{marker}\nsecond", marker)
    assert (first.action, second.action) == ("created", "updated")
    assert first.thread_id == second.thread_id == 1 and len(state.threads) == 1
    assert state.threads[1]["comments"][0]["content"] == f"{marker}\nsecond"
    assert [s for _, _, s in state.requests].count(429) == 1 and state.auth == {f"Bearer {TOKEN}"}
    assert second.url.endswith("/_git/repo-1/pullrequest/12?discussionId=1")


def live(state: AzureState) -> list[dict[str, Any]]:
    return [t for t in state.threads.values() if not t["comments"][0].get("isDeleted")]


def azure_client(url: str) -> AzureReposClient:
    return AzureReposClient(AzureSettings(TOKEN, url, "ml project", "repo-1", "TfsGit"), backoff=0)


MARKER = "<!-- mlops-ci:report model=iris workflow=ci -->"


def test_a_503_after_the_thread_was_created_leaves_one_thread(
    azure_server: tuple[str, AzureState],
) -> None:
    url, state = azure_server
    state.fail_after = [("POST", 503)]
    outcome = azure_client(url).upsert_thread(12, f"{MARKER}\nreport", MARKER)
    assert outcome.action == "created"
    assert [t["comments"][0]["content"] for t in live(state)] == [f"{MARKER}\nreport"]
    assert [s for m, _, s in state.requests if m == "POST"] == [503]  # not retried blindly


def test_a_copy_left_by_an_earlier_run_is_removed(azure_server: tuple[str, AzureState]) -> None:
    url, state = azure_server
    for _ in range(2):  # two threads of ours, as an older mlops-ci's retried POST left them
        state.add_thread(f"{MARKER}\nold", AzureState.ME)
    outcome = azure_client(url).upsert_thread(12, f"{MARKER}\nnew", MARKER)
    assert (outcome.action, outcome.thread_id) == ("updated", 1)
    assert [t["comments"][0]["content"] for t in live(state)] == [f"{MARKER}\nnew"]


def test_a_thread_someone_else_started_with_the_marker_is_never_touched(
    azure_server: tuple[str, AzureState],
) -> None:
    url, state = azure_server
    hostile = state.add_thread(f"{MARKER}\npwned", "mallory-id")
    client = azure_client(url)
    first = client.upsert_thread(12, f"{MARKER}\nreport 1", MARKER)
    second = client.upsert_thread(12, f"{MARKER}\nreport 2", MARKER)
    assert first.thread_id == second.thread_id != hostile
    assert state.threads[hostile]["comments"][0] == {
        "id": 1, "content": f"{MARKER}\npwned", "author": {"id": "mallory-id"}
    }  # fmt: skip
    assert state.threads[first.thread_id]["comments"][0]["content"] == f"{MARKER}\nreport 2"


def test_all_retries_failing_is_one_line_and_no_thread(
    azure_server: tuple[str, AzureState],
) -> None:
    from mlops_ci.errors import ServiceError

    url, state = azure_server
    client = azure_client(url)
    client.identity()
    state.fail_next = [503] * 12
    with pytest.raises(ServiceError) as caught:
        client.upsert_thread(12, f"{MARKER}\nreport", MARKER)
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)
    assert TOKEN not in str(caught.value) and not state.threads


def azure_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, **env: str
) -> tuple[Path, Any, Any, str]:
    """An Azure Pipelines job's environment around the iris example with a production model
    in an in-memory registry: (project, config, registry, production version)."""
    from tests.support.fakes import InMemoryRegistry
    from tests.support.runs import in_production
    from tests.support.store import copy_example

    project = copy_example(tmp_path / "iris")
    config = load_config(project)
    registry = InMemoryRegistry()
    version = in_production(registry, config)
    for verbs in (cli_project, cli_registry, cli_report, cli_deployment):  # each opens it
        monkeypatch.setattr(verbs, "open_registry", lambda _config: registry)
    base = {
        "TF_BUILD": "True",
        "SYSTEM_ACCESSTOKEN": TOKEN,
        "SYSTEM_COLLECTIONURI": url,
        "SYSTEM_TEAMPROJECT": "ml project",
        "BUILD_REPOSITORY_ID": "repo-1",
    }
    for key, value in {**base, **env}.items():
        monkeypatch.setenv(key, value)
    for key in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT"):
        monkeypatch.delenv(key, raising=False)
    return project, config, registry, version


def test_report_cli_posts_the_thread_in_azure_pipelines(
    azure_server: tuple[str, AzureState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.helpers import run_cli
    from tests.support.runs import candidate_run

    url, state = azure_server
    project, config, registry, _ = azure_job(
        tmp_path, monkeypatch, url, BUILD_REPOSITORY_PROVIDER="TfsGit",
        SYSTEM_PULLREQUEST_PULLREQUESTID="12", AGENT_TEMPDIRECTORY=str(tmp_path),
    )  # fmt: skip
    from mlops_ci.steps.compare import compare

    compare(config, registry, candidate_run(registry, project, c=0.01).run_id)
    assert run_cli("report", "-c", str(project), "--pr", "auto") == 0
    assert run_cli("report", "-c", str(project), "--pr", "auto") == 0
    out = capsys.readouterr().out
    assert "created thread on pull request 12" in out and "updated thread on pull request 12" in out
    assert "##vso[task.uploadsummary]" in out and "##vso[task.setvariable variable=verdict" in out
    assert TOKEN not in out
    (thread,) = state.threads.values()
    assert "iris-classifier" in thread["comments"][0]["content"]


# --- templates ---------------------------------------------------------------------------


def bash_scripts(node: Any) -> list[str]:
    """Every `bash:` script of a pipeline template, at any depth (stages, jobs, steps)."""
    if isinstance(node, dict):
        found = [node["bash"]] if isinstance(node.get("bash"), str) else []
        return found + [s for value in node.values() for s in bash_scripts(value)]
    if isinstance(node, list):
        return [s for item in node for s in bash_scripts(item)]
    return []


def test_the_script_check_catches_an_injected_parameter() -> None:
    injected = {"steps": [{"bash": "mlops-ci train --config ${{ parameters.config }}\n"}]}
    assert any("${{" in script for script in bash_scripts(injected))
    assert sum(len(bash_scripts(yaml.safe_load(t.read_text()))) for t in TEMPLATES) >= 8


def with_our_task(vendored: dict[str, Any]) -> dict[str, Any]:
    """check-jsonschema's vendored Azure Pipelines schema knows only Microsoft's built-in tasks:
    add MlopsCi@0 with the inputs task.json declares, as installing the extension does."""
    task = json.loads((TASK / "mlopsci" / "task.json").read_text())
    name = f"{task['name']}@{task['version']['Major']}"
    inputs = {i["name"]: {"type": "string"} for i in task["inputs"]}
    commands = list(task["inputs"][0]["options"])
    inputs["command"] = {"enum": commands}
    step = vendored["definitions"]["task"]
    step["properties"]["task"]["anyOf"].append({"enum": [name]})
    step["anyOf"].append(
        {
            "properties": {
                "task": {"pattern": f"^{name}$"},
                "inputs": {"type": "object", "properties": inputs, "additionalProperties": False},
            },
            "required": ["task"],
        }
    )
    return vendored


def test_pipeline_templates_validate_and_init_copies_them(tmp_path: Path) -> None:
    import check_jsonschema

    vendored = (
        Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/azure-pipelines.json"
    )
    schema = tmp_path / "azure-pipelines.json"
    schema.write_text(json.dumps(with_our_task(json.loads(vendored.read_text()))))
    done = subprocess.run(
        [
            "check-jsonschema",
            "--regex-variant",
            "python",
            "--data-transform",
            "azure-pipelines",
            "--schemafile",
            str(schema),
            *map(str, TEMPLATES),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for template in TEMPLATES:
        for script in bash_scripts(yaml.safe_load(template.read_text())):
            # inputs reach scripts only through env: a template expression or macro in the
            # script text would be pasted into the shell before it runs
            assert "${{" not in script and "$(" not in script, (template.name, script)
    pipeline = (ROOT / "templates" / "azure-pipelines" / "mlops-pipeline.yml").read_text()
    assert "environment: production" in pipeline and "template: approve.yml" in pipeline
    result = init_project(tmp_path, "azure")
    copied = sorted(p.name for p in (tmp_path / ".azure-pipelines").glob("*.yml"))
    assert copied == [t.name for t in TEMPLATES] and len(result.written) == len(TEMPLATES) + 1


@pytest.mark.parametrize(
    ("reason", "expected"), [("IndividualCI", []), ("PullRequest", ["--pr", "auto"])]
)
def test_report_template_comments_only_on_pull_request_builds(
    fake_cli: Path, tmp_path: Path, reason: str, expected: list[str]
) -> None:
    """The bash of report.yml as the agent runs it: outside a PR build the literal
    '$(System.PullRequest.PullRequestId)' must not be taken for a PR number."""
    import yaml

    (step,) = yaml.safe_load((ROOT / "templates" / "azure-pipelines" / "report.yml").read_text())[
        "steps"
    ]
    assert "PullRequestId" not in json.dumps(step["env"])
    env = {
        "PATH": f"{fake_cli.parent / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "MLOPS_CONFIG": "mlops.yaml",
        "BUILD_REASON": reason,
        "SYSTEM_PULLREQUEST_PULLREQUESTID": "$(System.PullRequest.PullRequestId)",
    }
    done = subprocess.run(["bash", "-c", step["bash"]], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(fake_cli.read_text()) == ["report", "--config", "mlops.yaml", *expected]


def test_pipeline_registers_packages_and_deploys_only_outside_pull_requests() -> None:
    import yaml

    folder = ROOT / "templates" / "azure-pipelines"
    register = yaml.safe_load((folder / "register.yml").read_text())
    assert "ne(variables['Build.Reason'], 'PullRequest')" in register["parameters"][1]["default"]
    pipeline = yaml.safe_load((folder / "mlops-pipeline.yml").read_text())
    train, package, *deploys = pipeline["stages"]
    (step,) = [s for s in train["jobs"][0]["steps"] if s.get("template") == "register.yml"]
    assert "ne(variables['Build.Reason'], 'PullRequest')" in step["parameters"]["condition"]
    assert "ne(variables['Build.Reason'], 'PullRequest')" in package["condition"]
    assert all(stage["dependsOn"] in ("Package", "Staging") for stage in deploys)


def test_approve_records_who_approved_the_environment_check_not_who_queued_the_run(
    azure_server: tuple[str, AzureState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.support.helpers import run_cli

    url, state = azure_server
    project, config, registry, version = azure_job(
        tmp_path, monkeypatch, url, BUILD_BUILDID="77", BUILD_REQUESTEDFOR="Queued By"
    )
    args = ["approve", "-c", str(project), "--version", version, "--env", "production"]
    args += ["--from-azure-run", "--reason", "release 7"]
    assert run_cli(*args) == 2  # no approval check ran: refused, nothing recorded
    assert "run 77 has no approved check" in capsys.readouterr().err
    assert (
        "mlops.approval.production.by" not in registry.get_version(config.model.name, version).tags
    )

    state.timeline = [
        {"type": "Stage", "id": "s1"},
        {"type": "Checkpoint.Approval", "id": "ap-1"},
    ]
    state.approvals["ap-1"] = {
        "id": "ap-1",
        "status": "approved",
        "steps": [
            {"assignedApprover": {"displayName": "Release managers"}, "status": "approved",
             "actualApprover": {"displayName": "Ada Lovelace", "uniqueName": "ada@example.com"},
             "comment": "numbers look right", "lastModifiedOn": "2026-11-25T10:00:00Z"},
        ],
    }  # fmt: skip
    assert run_cli(*args) == 0
    tags = registry.get_version(config.model.name, version).tags
    assert tags["mlops.approval.production.by"] == "Ada Lovelace (ada@example.com)"
    assert tags["mlops.approval.production.source"] == "azure environment check"
    assert tags["mlops.approval.production.reason"] == "release 7 (numbers look right)"
    assert tags["mlops.approval.production.at"] == "2026-11-25T10:00:00Z"
    assert TOKEN not in capsys.readouterr().out
