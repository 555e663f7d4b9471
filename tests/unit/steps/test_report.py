"""report: the verdict and failing rules first, cut to GitHub's limit, and nothing a pull
request's strings hold becomes markup or a link."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

import pytest

from mlops_ci.config.types import Config
from mlops_ci.evaluation import delta
from mlops_ci.steps.compare import compare
from mlops_ci.steps.register import register
from mlops_ci.steps.report import GITHUB_COMMENT_LIMIT, Report, marker_for, report
from tests.support.fakes import InMemoryRegistry
from tests.support.gfm import rendered
from tests.support.regression import regression
from tests.support.runs import candidate_run, in_production, record_train


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
    assert "| f1_macro | 0.8239 | 0.9500 | -0.1261 (worse by 0.1261) 🔴 | [" in built.markdown
    assert '    x-axis ["f1_macro", "accuracy"]' in built.markdown  # metrics in config order
    assert "    bar [0.823873, 0.833333]" in built.markdown
    assert "    line [0.949969, 0.95]" in built.markdown
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
    assert "Report cut to fit" in body and "`.mlops/report.md`" in body
    assert body.rstrip().endswith(marker)
    short = Report("m", "pass", "ok", marker, tmp_path / "r.md").comment_body()
    assert short == f"ok\n{marker}\n"


def test_marker_cannot_close_the_html_comment() -> None:
    assert marker_for("m", "evil --> <script>") == (
        "<!-- mlops-ci:report model=m workflow=evil -__ _script_ -->"
    )


HOSTILE = "x`|![i](https://evil.example/p.png) <img src=https://evil.example/q.png> @org/team #1"


LINKS = "see https://evil.example/a, www.evil.example, HTTP://evil.example and ops@evil.example"


def no_evil_link(html: str) -> None:
    targets = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert not [t for t in targets if "evil" in t], targets


def test_strings_from_a_pull_request_cannot_inject_markup_into_the_report(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    """Branch, actor, repository URL, data file and registered names come from the PR: none of
    them may embed an image, open a link, inject HTML, mention anyone or split a table."""
    from mlops_ci.steps.report import render

    in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root, c=0.01)
    run.tags.update(
        {
            "mlops.git.branch": HOSTILE,
            "mlops.ci.actor": LINKS,
            "mlops.ci.pr": HOSTILE,
            "mlops.git.repository": "https://evil.example/x)![p](https://evil.example/r.png",
            "mlops.ci.run_url": "javascript:alert(1)",
        }
    )
    comparison = compare(config, fake_registry, run.run_id)
    comparison.evaluation["data"] = HOSTILE
    comparison.evaluation["feature_change"] = {"added": [HOSTILE], "removed": []}
    deployed = {
        "name": "m", "version": "2", "env": HOSTILE, "target": "local", "status": "serving",
        "previous": None, "by": HOSTILE, "at": "now", "alias": HOSTILE, "note": HOSTILE,
        "approval": {"by": HOSTILE, "at": "now", "source": "x", "reason": HOSTILE},
        "gates": [{"name": "comparison", "passed": True, "detail": HOSTILE}],
        "steps": [], "split": {"2": 100.0}, "url": HOSTILE,
    }  # fmt: skip
    markdown = render(comparison, None, run.tags, deployed=deployed)
    html = rendered(markdown)
    targets = re.findall(r'(?:href|src)="([^"]*)"', html)
    assert "<img" not in html and not [t for t in targets if "evil" in t], targets
    assert "evil.example/a" in html  # the actor's text is shown, as text
    assert "javascript:" not in html and "CI run" not in markdown  # not a link it would write
    assert "@org/team" in html  # shown as text...
    assert "\\@org" in markdown  # ...but escaped, so GitHub does not mention anyone
    lineage = markdown[markdown.index("| lineage | |") :].split("\n\n")[0].splitlines()
    table = rendered("\n".join(lineage))
    assert table.count("<tr>") == len(lineage) - 1  # header + rows, nothing split off
    for row in table.split("<tr>")[1:]:
        assert row.count("<td>") + row.count("<th>") == 2, row
    assert f"<code>{escape(HOSTILE, quote=False)}</code>" in html  # verbatim, as code


def test_urls_in_user_strings_become_no_link_in_comparison_report_or_lineage(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    """GitHub autolinks bare URLs, www. names and e-mail addresses: user strings holding
    them are shown as text in comparison.md, report.md and `lineage --format md`."""
    from mlops_ci.report.comparison import markdown as comparison_md
    from mlops_ci.steps.lineage import lineage
    from mlops_ci.steps.lineage import markdown as trail_md
    from mlops_ci.steps.report import render

    in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root)
    hostile = {
        "mlops.git.branch": LINKS,
        "mlops.ci.actor": LINKS,
        "mlops.ci.pr": LINKS,
        "mlops.git.repository": "www.evil.example",
        "mlops.registered_by": LINKS,
    }
    run.tags.update(hostile)
    run.params.update({"note": LINKS})
    comparison = compare(config, fake_registry, run.run_id)
    comparison.evaluation["data"] = LINKS
    comparison.evaluation["feature_change"] = {"added": [LINKS], "removed": []}
    version = register(config, fake_registry, run.run_id, force=True).version
    fake_registry.versions[config.model.name][version].tags.update(hostile)
    documents = {
        "comparison.md": comparison_md(comparison),
        "report.md": render(comparison, None, run.tags),
        "lineage": trail_md(lineage(config, fake_registry, version)),
    }
    for name, markdown in documents.items():
        html = rendered(markdown)
        no_evil_link(html)
        assert "evil" in html, f"{name} shows none of the strings: the test tests nothing"


def test_report_says_when_its_comparison_is_not_the_last_train(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    from mlops_ci.steps.report import report

    run = candidate_run(fake_registry, config.root)
    record_train(config, run.run_id)
    compare(config, fake_registry)
    assert "⚠️" not in report(config, None, "ci").markdown
    record_train(config, None, error="exited with code 1: boom")
    text = report(config, None, "ci").markdown
    assert (
        f"failed (exited with code 1: boom); this report shows the comparison of run `{run.run_id}`"
        in text
    )


@pytest.mark.timeout(120)
def test_a_refused_regression_has_one_sign_per_gap(tmp_path: Path) -> None:
    config, reg, run_id = regression(tmp_path)
    result = compare(config, reg, run_id)
    assert result.verdict == "fail" and result.production is not None
    gap = result.candidate.metrics["rmse"] - result.production.metrics["rmse"]
    assert gap > 0  # the candidate's error is larger: worse
    text = report(config, reg, "pr").markdown
    shown = f"{gap:+.4f}"
    worse = f"worse by {abs(gap):.4f}"
    lines = [line for line in text.splitlines() if shown.lstrip("+") in line]
    # the metric table, the failing rule (twice: headline and all checks) and the bootstrap row
    assert len(lines) >= 4, lines
    for line in lines:
        assert shown in line and worse in line, line
        assert f"-{abs(gap):.4f}" not in line, line
    # r2 grew worse too, and says so in the same words
    r2 = result.candidate.metrics["r2"] - result.production.metrics["r2"]
    assert f"{r2:+.4f} (worse by {abs(r2):.4f}) 🔴" in text
    # what changed, next to the verdict
    top = text.split("| metric |")[0]
    assert "- param `max_depth`: `8` → `2`" in top and "- param `n_estimators`: `300` → `3`" in top


def test_the_registered_version_is_named_with_its_aliases_as_they_are_now(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    """register set `candidate`; a promotion since moved `production` to the version and the
    next register moved `candidate` on: the report says what the registry says now."""
    run = candidate_run(fake_registry, config.root)
    compare(config, fake_registry, run.run_id)
    register(config, fake_registry)
    fake_registry.set_alias("iris-classifier", "production", "1")  # promoted
    both = report(config, fake_registry, "pr").markdown
    assert "Registered as **iris-classifier v1** (aliases `candidate`, `production`)." in both
    later = fake_registry.create_version("iris-classifier", candidate_run(fake_registry,
                                         config.root), {}, "")  # fmt: skip
    fake_registry.set_alias("iris-classifier", "candidate", later.version)
    now = report(config, fake_registry, "pr").markdown
    assert "Registered as **iris-classifier v1** (alias `production`)." in now
    assert "`candidate`" not in now
    unknown = report(config, None, "pr").markdown  # no registry to ask: as of register
    assert "Registered as **iris-classifier v1** (alias `candidate` when registered)." in unknown


def test_the_report_has_the_models_drift_check(
    config: Config, fake_registry: InMemoryRegistry, tmp_path: Path
) -> None:
    import json

    import pandas as pd

    from mlops_ci.steps.drift import drift

    in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root)
    compare(config, fake_registry, run.run_id)
    assert "Data drift" not in report(config, fake_registry, "pr").markdown
    train = pd.read_csv(config.root / "data" / "train.csv")
    rows = train.sample(500, replace=True, random_state=0).drop(columns=["species"])
    rows["petal_length"] += rows["petal_length"].std()
    log = tmp_path / "log"
    log.mkdir()
    model = fake_registry.models["models:/m-run1"]
    with open(log / "inputs-20260101T000000-1-0001.jsonl", "w") as fh:
        for record, label in zip(rows.to_dict("records"), model.predict(rows), strict=True):
            fh.write(json.dumps({"version": "1", "inputs": record, "prediction": label}) + "\n")
    drift(config, current=str(log), registry=fake_registry)
    text = report(config, fake_registry, "pr").markdown
    section = text.split("### 🌊 Data drift: **drift** — 1 of 4 features drifted")[1]
    assert "| petal_length | " in section.split("\n| sepal")[0]  # the worst first
    line = next(x for x in section.splitlines() if x.startswith("- Prediction drift: PSI 0.4"))
    assert line.endswith(
        "🌊 drifted (reported, not counted): logged predictions against production "
        "(iris-classifier v1)'s predictions on the reference rows (scored now)"
    ), line
    drift_json = config.root / ".mlops" / "drift.json"
    record = json.loads(drift_json.read_text())
    drift_json.write_text(json.dumps({**record, "model": "another-model"}))
    assert "Data drift" not in report(config, fake_registry, "pr").markdown


def test_the_report_shows_live_quality_beside_the_offline_figures(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    import json

    in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root)
    compared = compare(config, fake_registry, run.run_id)
    assert "Live quality" not in report(config, fake_registry, "pr").markdown
    assert compared.production is not None
    offline = compared.production.metrics["f1_macro"]
    periods = [
        {"start": f"2026-12-07T0{h}:00:00Z", "end": f"2026-12-07T0{h + 1}:00:00Z",
         "versions": {"1": {"rows": 50, "metrics": {"f1_macro": 0.9 - h / 100}},
                      "2": {"rows": 50, "metrics": {"f1_macro": 0.8}}}}
        for h in range(3)
    ]  # fmt: skip
    record = {
        "model": config.model.name, "labels": "labels.csv", "labels_read": 300,
        "current": ".mlops/inputs", "every": "1h", "primary_metric": "f1_macro",
        "versions": {"1": {"rows": 150, "primary_rows": 150, "shadow_rows": 0,
                           "metrics": {"f1_macro": 0.89}},
                     "2": {"rows": 150, "primary_rows": 0, "shadow_rows": 150,
                           "metrics": {"f1_macro": 0.8}}},
        "comparison": {"production": "1", "candidate": "2", "verdict": "fail", "rows": 150,
                       "significance": {"metric": "f1_macro", "difference": -0.09,
                                        "ci_low": -0.12, "ci_high": -0.05, "confidence": 0.95}},
        "production_health": {"version": "1", "verdict": "healthy", "checks": []},
        "periods": periods,
    }  # fmt: skip
    quality_json = config.root / ".mlops" / "quality.json"
    quality_json.write_text(json.dumps(record))
    text = report(config, fake_registry, "pr").markdown
    section = text.split("### Live quality of `iris-classifier`: production v1 ✅ **healthy**")[1]
    assert f"| v1 | production | {delta.number(offline)} | 0.8900 | 150 |" in section
    assert "| v2 | candidate (shadow) | — | 0.8000 | 150 |" in section
    assert "[-0.1200, -0.0500] on 150 paired rows" in section
    assert "```mermaid\nxychart-beta" in section and "line [0.9, 0.89, 0.88]" in section
    quality_json.write_text(json.dumps({**record, "model": "another-model"}))
    assert "Live quality" not in report(config, fake_registry, "pr").markdown


def test_a_drift_or_quality_record_that_is_not_json_costs_its_section_only(
    config: Config, fake_registry: InMemoryRegistry
) -> None:
    in_production(fake_registry, config)
    run = candidate_run(fake_registry, config.root)
    compare(config, fake_registry, run.run_id)
    (config.root / ".mlops" / "drift.json").write_text('{"verdict": "dri')
    (config.root / ".mlops" / "quality.json").write_text("")
    text = report(config, fake_registry, "pr").markdown
    assert "### ⚠️ Data drift" in text and "drift.json: not valid JSON" in text
    assert "### ⚠️ Live quality" in text and "quality.json: not valid JSON" in text
    assert "| f1_macro |" in text  # the rest of the report is there
