"""Provenance: the data fingerprint, the CI context, the environment lock, who acts; inputs
outside the project refused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlops_ci.errors import InputError
from mlops_ci.provenance import _strip_credentials, ci_context, environment_lock, fingerprint


def test_fingerprint_changes_with_one_byte_and_ignores_tool_state(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "data" / "__pycache__").mkdir()
    before = fingerprint(tmp_path, ("data",))
    (tmp_path / "data" / "__pycache__" / "junk.pyc").write_bytes(b"\0")
    assert fingerprint(tmp_path, ("data",)) == before
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,3\n")
    after = fingerprint(tmp_path, ("data",))
    assert after.sha256 != before.sha256
    assert list(after.manifest) == ["data/a.csv"]


def test_missing_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"train.inputs\[1\]: 'nope.py' does not exist"):
        fingerprint(tmp_path, (".", "nope.py"))


def test_github_context_reads_pr_from_event_payload(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 42}}))
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_ACTOR": "octocat",
        "GITHUB_REPOSITORY": "acme/iris",
        "GITHUB_RUN_ID": "7",
        "GITHUB_SERVER_URL": "https://ghe.example",
    }
    ctx = ci_context(env)
    assert (ctx.provider, ctx.pr, ctx.actor) == ("github", "42", "octocat")
    assert ctx.run_url == "https://ghe.example/acme/iris/actions/runs/7"


def test_github_context_falls_back_to_the_merge_ref() -> None:
    ctx = ci_context({"GITHUB_ACTIONS": "true", "GITHUB_REF": "refs/pull/9/merge"})
    assert ctx.pr == "9"


def test_azure_context() -> None:
    env = {
        "TF_BUILD": "True",
        "SYSTEM_PULLREQUEST_PULLREQUESTID": "17",
        "BUILD_REQUESTEDFOR": "Ada",
    }
    ctx = ci_context(env)
    assert (ctx.provider, ctx.pr, ctx.actor) == ("azure", "17", "Ada")


def test_credentials_never_reach_a_tag() -> None:
    assert _strip_credentials("https://x:tok@github.com/a/b.git") == "https://github.com/a/b.git"
    assert _strip_credentials("git@github.com:a/b.git") == "git@github.com:a/b.git"


def test_environment_lock_lists_installed_distributions() -> None:
    lock = environment_lock().splitlines()
    names = [line.split("==")[0] for line in lock]
    assert names == sorted(names) and len(names) == len(set(names))
    assert any(line.startswith("click==") for line in lock)
    # Read from folder names, it says what every distribution's own METADATA says.
    from importlib import metadata

    expected = {
        re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
        for d in reversed(list(metadata.distributions()))
    }
    assert dict(line.split("==") for line in lock) == expected


def test_who_is_the_ci_actor_else_a_local_name_never_unknown() -> None:
    from mlops_ci.provenance import who

    assert who({"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octocat"}) == "octocat"
    assert who({"TF_BUILD": "True", "BUILD_REQUESTEDFOR": "Ada"}) == "Ada"
    local = who({})
    assert local and local != "unknown"


def test_inputs_outside_the_project_are_refused_and_a_link_inside_is_followed(
    tmp_path: Path,
) -> None:
    project, outside = tmp_path / "project", tmp_path / "shared"
    project.mkdir()
    outside.mkdir()
    (outside / "data.csv").write_text("a\n1\n")
    for entry in ("/etc/hostname", "../shared/data.csv"):
        with pytest.raises(InputError, match="is outside the project folder"):
            fingerprint(project, (entry,))
    (project / "data").symlink_to(outside)
    assert list(fingerprint(project, ("data",)).manifest) == ["data/data.csv"]
