from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.ci import emit_outputs, error_annotations, write_summary
from mlops_ci.config import Config, load_config
from mlops_ci.errors import ConfigError, GateFailed
from mlops_ci.steps.compare import compare
from mlops_ci.steps.register import register
from mlops_ci.steps.report import GITHUB_COMMENT_LIMIT, Report, marker_for, report
from tests.fakes import InMemoryRegistry
from tests.unit.test_gate import candidate_run, in_production


def test_report_puts_the_verdict_and_failing_rules_first(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root, c=0.01)
    compare(config, fake_registry, run.run_id)
    built = report(config, fake_registry, "pr")
    lines = built.markdown.splitlines()
    assert lines[0] == "## ❌ `iris-classifier`: candidate failed the gate"
    assert lines[2] == "**Failing rules:**"
    assert "Not registered." in built.markdown
    assert "| f1_macro | 0.8239 | 0.9500 | ▼-0.1261 🔴 | [" in built.markdown
    assert "    bar [0.8239, 0.8333]" in built.markdown  # metrics in config order
    assert "    line [0.9500, 0.9500]" in built.markdown
    assert "| commit | `abc` |" in built.markdown
    assert (config.root / ".mlops" / "report.md").read_text() == built.markdown


def test_report_names_the_registered_version(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    run = candidate_run(fake_registry, config.root)
    compare(config, fake_registry, run.run_id)
    register(config, fake_registry)
    text = report(config, fake_registry, "pr").markdown
    assert text.startswith("## 🆕 `iris-classifier`: candidate has no production model")
    assert "Registered as **iris-classifier v1** (alias `candidate`)." in text
    assert "| model version | iris-classifier v1 |" in text


def test_report_needs_a_comparison(config: Config, fake_registry: InMemoryRegistry) -> None:
    with pytest.raises(Exception, match="nothing to report"):
        report(config, fake_registry, "pr")


def test_long_report_is_cut_to_githubs_limit_with_a_pointer(tmp_path: Path) -> None:
    marker = marker_for("m", "w")
    long = "\n".join(f"| row {i} | {'x' * 80} |" for i in range(2000))
    body = Report("m", "pass", long, marker, tmp_path / "report.md").comment_body()
    assert len(body) <= GITHUB_COMMENT_LIMIT
    assert "Report truncated" in body and "`.mlops/report.md`" in body
    assert body.rstrip().endswith(marker)
    short = Report("m", "pass", "ok", marker, tmp_path / "r.md").comment_body()
    assert short == f"ok\n{marker}\n"


def test_marker_cannot_close_the_html_comment() -> None:
    assert marker_for("m", "evil --> <script>") == (
        "<!-- mlops-ci:report model=m workflow=evil -__ _script_ -->"
    )


def test_config_errors_become_annotations_on_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "ml").mkdir()
    (tmp_path / "ml" / "mlops.yaml").write_text("version: 1\nmodel: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "ml")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path)}
    commands = error_annotations(err.value, env)
    assert (
        "::error file=ml/mlops.yaml,line=2,title=mlops-ci::model.name: required key is missing"
        in commands
    )
    assert error_annotations(err.value, {}) == []
    gate = error_annotations(GateFailed("verdict fail\nsecond line", hint="see report"), env)
    assert gate == [
        "::error title=mlops-ci: the gate said no::verdict fail%0Asecond line (hint: see report)"
    ]


def test_outputs_and_summary_files(tmp_path: Path) -> None:
    out, summary = tmp_path / "out", tmp_path / "summary"
    env = {"GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)}
    emit_outputs({"run_id": "abc", "notes": "two\nlines"}, env)
    text = out.read_text().splitlines()
    assert text[0] == "run_id=abc"
    delimiter = text[1].split("<<")[1]
    assert text[1:] == [f"notes<<{delimiter}", "two", "lines", delimiter]
    assert write_summary("# hi", env) and summary.read_text() == "# hi\n"
    assert not write_summary("# hi", {})
