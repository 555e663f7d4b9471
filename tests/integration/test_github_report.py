"""The report reaching GitHub: PyGithub against a loopback server speaking the REST shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ci.ci.github import GithubClient, GithubSettings
from mlops_ci.config.types import Config
from mlops_ci.steps.compare import compare
from mlops_ci.steps.report import Report, report
from tests.support.fakes import InMemoryRegistry
from tests.support.github_server import Fault, GithubState, github_server
from tests.support.helpers import run_cli
from tests.support.runs import candidate_run, in_production

TOKEN = "ghs_test0123456789abcdefSECRET"
REPO = "acme/iris"


@pytest.fixture
def gh() -> Iterator[tuple[str, GithubState]]:
    with github_server(TOKEN) as server:
        yield server


def client(api_url: str) -> GithubClient:
    settings = GithubSettings(TOKEN, api_url, REPO)
    return GithubClient(settings, retries=3, seconds_between_requests=0, seconds_between_writes=0)


def use_github(monkeypatch: pytest.MonkeyPatch, api: str) -> None:
    """The environment a workflow job with a write token gives the CLI."""
    for key, value in {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": api,
        "GITHUB_REPOSITORY": REPO,
    }.items():
        monkeypatch.setenv(key, value)


def built_report(config: Config, registry: InMemoryRegistry, workflow: str = "pr") -> Report:
    in_production(registry, config)
    run = candidate_run(registry, config.root, c=0.01)
    compare(config, registry, run.run_id)
    return report(config, registry, workflow)


def test_first_run_creates_the_comment_and_the_next_updates_it(
    config: Config, fake_registry: InMemoryRegistry, gh: tuple[str, GithubState], tmp_path: Path
) -> None:
    api, state = gh
    built = built_report(config, fake_registry)
    first = client(api).upsert_comment(7, built.comment_body(), built.marker, tmp_path)
    assert first.action == "created"
    second = client(api).upsert_comment(7, "changed\n" + built.marker, built.marker, tmp_path)
    assert (second.action, second.comment_id) == ("updated", first.comment_id)
    assert [c["body"] for c in state.comments.values()] == ["changed\n" + built.marker]
    assert state.authorizations == {f"token {TOKEN}"}


def test_two_workflows_keep_their_own_comments(
    config: Config, fake_registry: InMemoryRegistry, gh: tuple[str, GithubState], tmp_path: Path
) -> None:
    api, state = gh
    built = built_report(config, fake_registry)
    other = report(config, fake_registry, "nightly")
    assert built.marker != other.marker
    for r in (built, other, built):
        client(api).upsert_comment(7, r.comment_body(), r.marker, tmp_path)
    assert len(state.comments) == 2


def test_stray_duplicates_are_removed(gh: tuple[str, GithubState], tmp_path: Path) -> None:
    api, state = gh
    marker = "<!-- mlops-ci:report model=m workflow=w -->"
    c = client(api)
    for _ in range(2):  # as if a POST had been retried after GitHub created the comment
        c._repo.get_issue(3).create_comment("old " + marker)
    assert c.upsert_comment(3, "new " + marker, marker, tmp_path).action == "updated"
    assert [x["body"] for x in state.comments.values()] == ["new " + marker]


def test_a_502_is_retried(gh: tuple[str, GithubState], tmp_path: Path) -> None:
    api, state = gh
    state.faults.append(
        Fault("GET", r"/repos/acme/iris/issues/5/comments", 502, body={"message": "Bad gateway"})
    )
    outcome = client(api).upsert_comment(5, "hello <!-- m -->", "<!-- m -->", tmp_path)
    assert outcome.action == "created"
    gets = [s for m, p, s in state.requests if m == "GET" and p.endswith("/issues/5/comments")]
    assert gets == [502, 200]


def test_secondary_rate_limit_waits_for_retry_after(
    gh: tuple[str, GithubState], tmp_path: Path
) -> None:
    api, state = gh
    state.faults.append(
        Fault(
            "POST",
            r"/repos/acme/iris/issues/5/comments",
            403,
            {"Retry-After": "1"},
            {"message": "You have exceeded a secondary rate limit."},
        )
    )
    start = time.monotonic()
    outcome = client(api).upsert_comment(5, "hi <!-- m -->", "<!-- m -->", tmp_path)
    assert outcome.action == "created"
    assert time.monotonic() - start >= 1.0
    posts = [s for m, p, s in state.requests if m == "POST"]
    assert posts == [403, 201]


def test_primary_rate_limit_waits_for_the_reset_time(
    gh: tuple[str, GithubState], tmp_path: Path
) -> None:
    api, state = gh
    reset = int(time.time()) + 1
    state.faults.append(
        Fault(
            "GET",
            r"/repos/acme/iris/issues/6/comments",
            403,
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
            {"message": "API rate limit exceeded for installation ID 1."},
        )
    )
    outcome = client(api).upsert_comment(6, "hi <!-- m -->", "<!-- m -->", tmp_path)
    assert outcome.action == "created"
    assert time.time() >= reset  # waited for x-ratelimit-reset before retrying
    gets = [s for m, p, s in state.requests if m == "GET" and p.endswith("/comments")]
    assert gets == [403, 200]


def test_github_enterprise_api_prefix(gh: tuple[str, GithubState], tmp_path: Path) -> None:
    api, state = gh
    outcome = client(f"{api}/api/v3").upsert_comment(2, "x <!-- m -->", "<!-- m -->", tmp_path)
    assert outcome.action == "created" and len(state.comments) == 1


def in_actions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, api: str, token: str | None
) -> tuple[Path, Path]:
    """The environment of a GitHub Actions step on pull request 12; (summary, outputs)."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 12}}))
    summary, outputs = tmp_path / "summary.md", tmp_path / "outputs"
    for key, value in {
        "GITHUB_ACTIONS": "true",
        "GITHUB_API_URL": api,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_WORKFLOW": "ml",
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
    }.items():
        monkeypatch.setenv(key, value)
    if token:
        monkeypatch.setenv("GITHUB_TOKEN", token)
    else:
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    return summary, outputs


def test_report_cli_posts_sticky_comment_and_summary(
    project: Path,
    gh: tuple[str, GithubState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    api, state = gh
    summary, outputs = in_actions(monkeypatch, tmp_path, api, TOKEN)
    c = str(project)
    assert run_cli("train", "-c", c) == 0
    assert run_cli("compare", "-c", c) == 0
    assert run_cli("report", "-c", c, "--pr", "auto") == 0
    assert run_cli("report", "-c", c, "--pr", "auto") == 0  # second run edits, never duplicates
    (comment,) = state.comments.values()
    assert comment["_issue"] == (REPO, 12)
    assert "<!-- mlops-ci:report model=iris-classifier workflow=ml -->" in comment["body"]
    assert "🆕 `iris-classifier`" in comment["body"] and "```mermaid" in comment["body"]
    assert summary.read_text().count("## 🆕 `iris-classifier`") == 2
    assert (
        "comment-url=https://github.example/acme/iris/pull/12#issuecomment-" in outputs.read_text()
    )
    out, err = capfd.readouterr()
    assert TOKEN not in out + err + summary.read_text() + outputs.read_text()
    assert TOKEN not in (project / ".mlops" / "report.md").read_text()


def test_without_a_token_the_report_keeps_its_outputs_and_says_what_to_add(
    project: Path,
    gh: tuple[str, GithubState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A PR build whose report step got no token: the step succeeds (the steps after it run),
    its outputs are set, the comment is saved, and one annotation says what to add."""
    api, state = gh
    _, outputs = in_actions(monkeypatch, tmp_path, api, None)
    c = str(project)
    assert run_cli("train", "-c", c) == 0 and run_cli("compare", "-c", c) == 0
    assert run_cli("report", "-c", c, "--pr", "auto") == 0
    written = outputs.read_text()
    assert f"report-path={project / '.mlops' / 'report.md'}" in written
    assert "verdict=no-baseline" in written
    assert f"saved-comment={project / '.mlops' / 'pr-comment'}" in written
    assert json.loads((project / ".mlops" / "pr-comment" / "meta.json").read_text())["pr"] == 12
    out, _ = capfd.readouterr()
    (warning,) = [line for line in out.splitlines() if line.startswith("::warning")]
    assert "no GITHUB_TOKEN" in warning and "pull-requests: write" in warning
    assert state.comments == {}


def test_fork_token_saves_the_report_and_workflow_run_posts_it(
    config: Config,
    fake_registry: InMemoryRegistry,
    gh: tuple[str, GithubState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    api, state = gh
    built = built_report(config, fake_registry)
    state.read_only = True
    saved = client(api).upsert_comment(9, built.comment_body(), built.marker, tmp_path / "saved")
    assert saved.action == "saved" and "cannot comment on #9" in (saved.reason or "")
    assert state.comments == {}
    assert json.loads((tmp_path / "saved" / "meta.json").read_text())["pr"] == 9

    # The base repository's workflow_run job, with a write token, posts it.
    state.read_only = False
    state.pulls[9] = "a" * 40
    use_github(monkeypatch, api)
    args = ["report", "--post-saved", str(tmp_path / "saved"), "--expect-head-sha"]
    assert run_cli(*args, "b" * 40) == 2  # the PR's head is not the run's commit: refused
    assert state.comments == {}
    assert run_cli(*args, "a" * 40) == 0
    (comment,) = state.comments.values()
    assert comment["body"] == built.comment_body()
    out, err = capfd.readouterr()
    assert "not the run's" in err and TOKEN not in out + err


def test_bad_token_is_named_without_printing_it(
    gh: tuple[str, GithubState], tmp_path: Path
) -> None:
    api, _ = gh
    bad = GithubClient(
        GithubSettings("wrong-token", api, REPO),
        retries=0,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    with pytest.raises(Exception) as err:
        bad.upsert_comment(1, "x", "<!-- m -->", tmp_path)
    assert "401 Bad credentials" in str(err.value) and "wrong-token" not in str(err.value)
    assert getattr(err.value, "exit_code", None) == 2


def test_deploy_gates_read_github_environment_approvals_and_pr_reviews(
    gh: tuple[str, GithubState], config: Config
) -> None:
    """The approval gate in GitHub Actions: the run's deployment-review history (the
    environment's required reviewers) and, when configured, an approved PR review."""
    import dataclasses

    from mlops_ci.registry import VersionRecord
    from mlops_ci.steps.gates import check_gates

    api, state = gh
    env = dataclasses.replace(config.deploy["production"], require_pr_review=True)
    version = VersionRecord("iris-classifier", "3", "run1", "", {"mlops.compare.verdict": "pass"})
    event = config.root / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 9}}))
    environ = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_RUN_ID": "555",
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": api,
        "GITHUB_REPOSITORY": "acme/iris",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
    }
    gates, approval = check_gates(version, env, environ)
    assert [(g.name, g.passed) for g in gates] == [
        ("comparison", True),
        ("approval", False),
        ("pr-review", False),
    ]
    state.run_approvals[555] = [
        {"state": "rejected", "environments": [{"name": "production"}], "user": {"login": "eve"}},
        {
            "state": "approved",
            "comment": "ship it",
            "environments": [{"name": "production"}],
            "user": {"login": "octocat"},
        },
    ]
    state.reviews[9] = [
        {"id": 1, "state": "CHANGES_REQUESTED", "user": {"login": "bob"}},
        {"id": 2, "state": "APPROVED", "user": {"login": "carol"}},
        {"id": 3, "state": "APPROVED", "user": {"login": "bob"}},
    ]
    gates, approval = check_gates(version, env, environ)
    assert all(g.passed for g in gates), gates
    assert approval is not None and (approval.by, approval.reason) == ("octocat", "ship it")
    assert approval.source == "github environment"
    assert "#9 approved by bob, carol" in gates[2].detail
    assert ("GET", "/repos/acme/iris/actions/runs/555/approvals", 200) in state.requests


MARKER = "<!-- mlops-ci:report model=m workflow=w -->"


def test_a_502_after_github_created_the_comment_leaves_one_comment(
    gh: tuple[str, GithubState], tmp_path: Path
) -> None:
    api, state = gh
    state.faults.append(Fault("POST", r"/repos/acme/iris/issues/5/comments", 502, after=True))
    outcome = client(api).upsert_comment(5, "report " + MARKER, MARKER, tmp_path)
    assert outcome.action == "created"
    assert [c["body"] for c in state.comments.values()] == ["report " + MARKER]
    posts = [s for m, p, s in state.requests if m == "POST"]
    assert posts == [502]  # not retried blindly: the comments were read again instead


def test_every_retry_failing_is_one_line_exit_3_and_no_comment(
    gh: tuple[str, GithubState], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api, state = gh
    for _ in range(12):
        state.faults.append(Fault("GET", r"/repos/acme/iris/issues/5/comments", 503))
    from mlops_ci.errors import ServiceError

    with pytest.raises(ServiceError) as caught:
        client(api).upsert_comment(5, "report " + MARKER, MARKER, tmp_path)
    assert caught.value.exit_code == 3 and "\n" not in str(caught.value)
    assert "commenting on pull request #5" in str(caught.value) and TOKEN not in str(caught.value)
    assert not state.comments


def test_a_failed_create_that_did_not_land_is_an_error_and_no_comment(
    gh: tuple[str, GithubState], tmp_path: Path
) -> None:
    from mlops_ci.errors import ServiceError

    api, state = gh
    state.faults.append(Fault("POST", r"/repos/acme/iris/issues/5/comments", 500))
    with pytest.raises(ServiceError, match="500"):
        client(api).upsert_comment(5, "report " + MARKER, MARKER, tmp_path)
    assert not state.comments


@pytest.mark.parametrize(
    ("token", "login"), [(TOKEN, None), ("ghp_personal0123456789SECRET", "mlops-bot")]
)
def test_a_comment_by_someone_else_carrying_the_marker_is_never_touched(
    tmp_path: Path, token: str, login: str | None
) -> None:
    """An older comment by another user with the marker: neither edited nor deleted, and the
    report goes into the token's own comment (GITHUB_TOKEN's bot, or the user GET /user names)."""
    with github_server(token) as (api, state):
        state.login = login
        hostile = state.add_comment(REPO, 5, "pwned " + MARKER, "mallory")
        settings = GithubSettings(token, api, REPO)
        gh_client = GithubClient(settings, retries=1, seconds_between_requests=0,
                                 seconds_between_writes=0)  # fmt: skip
        first = gh_client.upsert_comment(5, "report 1 " + MARKER, MARKER, tmp_path)
        second = gh_client.upsert_comment(5, "report 2 " + MARKER, MARKER, tmp_path)
        assert first.action == "created" and second.action == "updated"
        assert first.comment_id == second.comment_id != hostile
        assert state.comments[hostile]["body"] == "pwned " + MARKER
        ours = state.comments[first.comment_id or 0]
        assert ours["body"] == "report 2 " + MARKER
        assert ours["user"]["login"] == (login or "github-actions[bot]")
        asked = [p for m, p, _ in state.requests if p == "/user"]
        assert asked == ([] if token.startswith("ghs_") else ["/user"])


def test_every_posted_body_fits_the_limit_and_keeps_its_marker(
    gh: tuple[str, GithubState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow_run path posts a body saved by a fork's job: cut like any other, closing
    the code block and the <details> the cut left open before the note and the marker."""
    from mlops_ci.ci.github import COMMENT_LIMIT, save_for_artifact

    api, state = gh
    body = "<details><summary>x</summary>\n\n```\n" + "a line of text\n" * 14_000
    save_for_artifact(tmp_path / "saved", REPO, 9, body + MARKER, MARKER)
    assert len(body) > 200_000
    state.pulls[9] = "a" * 40
    use_github(monkeypatch, api)
    code = run_cli("report", "--post-saved", str(tmp_path / "saved"), "--expect-head-sha", "a" * 40)
    assert code == 0, code
    (posted,) = [c["body"] for c in state.comments.values()]
    assert len(posted) <= COMMENT_LIMIT and posted.rstrip().endswith(MARKER)
    tail = posted[posted.rindex("a line of text") :]
    assert tail.index("```") < tail.index("</details>") < tail.index("✂️")
