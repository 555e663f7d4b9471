"""report: one markdown story of the job — verdict first, metrics, chart, checks, lineage.

Built from the job's records under .mlops/ and the run's tags in the registry; the same text
goes to the job summary and, with a hidden marker, to the sticky pull-request comment. The
registered version's aliases are read from the registry as they are now (a promotion since
register moved them), and a drift check of the model (.mlops/drift.json) has a section, as
has live quality (.mlops/quality.json: the primary metric offline beside live, per period).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_ci import __version__
from mlops_ci.config.types import Config
from mlops_ci.errors import InputError, MlopsError
from mlops_ci.evaluation import delta
from mlops_ci.evaluation.comparison import (
    FAIL,
    NO_BASELINE,
    PASS,
    ComparisonResult,
    read_comparison,
)
from mlops_ci.metrics import METRICS
from mlops_ci.pipeline.records import STAGES_ARTIFACT
from mlops_ci.records import (
    FAILED,
    KILLED,
    RUNNING,
    JobFolder,
    RegisterResult,
    read_deploy,
    read_object,
    read_package,
    read_registration,
    read_train,
    write_text_atomic,
)
from mlops_ci.registry import TAG_ISOLATION, ModelRegistry
from mlops_ci.report import charts
from mlops_ci.report import markdown as md
from mlops_ci.report.comparison import change_lines, cost_lines, feature_change_lines, why_lines
from mlops_ci.report.quality import live_section
from mlops_ci.steps import drift as drift_step

# A link target the report writes as a link: http(s), and no character that could end it.
_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+$")
GITHUB_COMMENT_LIMIT = md.GITHUB_COMMENT_LIMIT
_ICON = {PASS: "✅", FAIL: "❌", NO_BASELINE: "🆕", "skipped": "➖"}
_HEADLINE = {
    PASS: "passed the gate against production",
    FAIL: "failed the gate",
    NO_BASELINE: "has no production model to compare with (absolute rules only)",
}


@dataclass(frozen=True)
class Report:
    model: str
    verdict: str
    markdown: str  # the full report, as written to .mlops/report.md
    marker: str  # hidden HTML comment that finds this report's PR comment again
    path: Path

    def comment_body(self, limit: int = GITHUB_COMMENT_LIMIT) -> str:
        """The PR comment: the report plus its marker, cut to fit GitHub's limit."""
        return md.fit(f"{self.markdown}\n{self.marker}\n", limit, self.marker)


def marker_for(model: str, workflow: str) -> str:
    """One marker per model and workflow, so two workflows on one PR keep their own comment."""

    def safe(text: str) -> str:  # nothing that could end or break the HTML comment
        return re.sub(r"[^A-Za-z0-9 ._/-]", "_", text).replace("--", "-_")

    return f"<!-- mlops-ci:report model={safe(model)} workflow={safe(workflow)} -->"


def report(config: Config, registry: ModelRegistry | None, workflow: str) -> Report:
    comparison = read_comparison(config.root)
    if comparison is None:
        raise InputError(
            "nothing to report: no .mlops/comparison.json", hint="run `mlops-ci compare` first"
        )
    registration = read_registration(config.root)
    if registration is not None and registration.run_id != comparison.candidate.run_id:
        registration = None  # an earlier run's record
    tags: dict[str, str] = {}
    stages = ""
    if registry is not None and comparison.candidate.run_id:
        candidate = registry.get_run(comparison.candidate.run_id)
        tags = candidate.tags
        if any(key.startswith("stage.") for key in candidate.params):
            stages = _stages(registry.read_artifact_text(candidate.run_id, STAGES_ARTIFACT))
    packaged = read_package(config.root)
    if packaged is not None and packaged.get("run_id") != comparison.candidate.run_id:
        packaged = None  # another model's package
    deployed = read_deploy(config.root)
    if deployed is not None and deployed.get("name") != comparison.model:
        deployed = None
    why = "\n".join(why_lines(comparison, config.evaluate.importance.top)).strip()
    text = render(
        comparison,
        registration,
        tags,
        packaged,
        deployed,
        stale_note(config, comparison),
        why,
        stages,
        _aliases_now(registry, registration),
        _drift(config, comparison.model),
        _live(config, comparison, registration),
    )
    path = write_text_atomic(JobFolder(config.root).report, text)
    return Report(
        comparison.model, comparison.verdict, text, marker_for(comparison.model, workflow), path
    )


def stale_note(config: Config, comparison: ComparisonResult) -> str | None:
    """Say so when the comparison reported is not of this checkout's last successful train."""
    record = read_train(config.root)
    if record is None:
        return None
    compared = comparison.candidate.run_id
    if record.get("status") in (FAILED, KILLED, RUNNING):  # running: died, or runs now
        ended = "failed" if record["status"] == FAILED else "did not finish"
        return (
            f"The last `mlops-ci train` {ended} ({md.text(record.get('error', 'no outcome'))}); "
            f"this report shows the comparison of run {md.code(compared)}, from before it."
        )
    last = record.get("run_id")
    if last and last != compared:
        return (
            f"This report shows the comparison of run {md.code(compared)}, not of run "
            f"{md.code(last)} that the last `mlops-ci train` recorded: run `mlops-ci compare` "
            "again."
        )
    return None


def render(
    comparison: ComparisonResult,
    registration: RegisterResult | None,
    tags: dict[str, str],
    packaged: dict[str, Any] | None = None,
    deployed: dict[str, Any] | None = None,
    stale: str | None = None,
    why: str = "",
    stages: str = "",
    aliases: tuple[str, ...] | None = None,
    drifted: str = "",
    live: str = "",
) -> str:
    """The report; ``aliases``: the registered version's aliases now (None: not known, the
    alias register set is named as of then); ``drifted``: the drift section; ``live``: the
    live quality section."""
    sections = [
        _headline(comparison, registration, aliases),
        f"> ⚠️ {stale}" if stale else "",  # built from safe parts by stale_note
        "\n".join(change_lines(comparison.changes)) if comparison.production else "",
        "\n".join(feature_change_lines(comparison.evaluation.get("feature_change"))).strip(),
        _metrics_table(comparison),
        _chart(comparison),
        "\n".join(cost_lines(comparison)),
        _checks(comparison),
        why,
        _package(packaged) if packaged else "",
        _deploy(deployed) if deployed else "",
        drifted,
        live,
        _lineage(comparison, registration, tags),
        stages,
        f"<sub>mlops-ci {__version__} · evaluation {md.code(comparison.evaluation['data'])} "
        f"({comparison.evaluation['rows']} rows, sha256 "
        f"{md.code(str(comparison.evaluation['sha256'])[:12])})</sub>",
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _aliases_now(
    registry: ModelRegistry | None, registration: RegisterResult | None
) -> tuple[str, ...] | None:
    """The registered version's aliases as the registry has them now; None when it cannot say."""
    if registry is None or registration is None:
        return None
    try:
        return registry.get_version(registration.name, registration.version).aliases
    except MlopsError:  # deleted since, or the registry did not answer: as of register
        return None


def _drift(config: Config, model: str) -> str:
    """The drift section, from .mlops/drift.json when it is this model's."""
    try:
        record = read_object(JobFolder(config.root).drift)
    except InputError as err:  # not JSON: this section says so, the report goes on
        return f"### ⚠️ Data drift\n\n{md.text(str(err))}"
    if record is None or record.get("model", model) != model:
        return ""
    try:
        return drift_step.markdown(record, config.evaluate.importance.top, level="###").strip()
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return f"### ⚠️ Data drift\n\n.mlops/drift.json cannot be shown ({md.text(repr(err))})."


def _live(config: Config, c: ComparisonResult, registration: RegisterResult | None) -> str:
    """The live quality section, from .mlops/quality.json when it is this model's: the
    primary metric offline (this comparison's, by version) beside live."""
    try:
        record = read_object(JobFolder(config.root).quality)
    except InputError as err:  # not JSON: this section says so, the report goes on
        return f"### ⚠️ Live quality\n\n{md.text(str(err))}"
    if record is None or record.get("model") != c.model:
        return ""
    offline = {}
    if c.production is not None and c.production.version:
        offline[c.production.version] = c.production.metrics
    if registration is not None:
        offline[registration.version] = c.candidate.metrics
    try:
        return live_section(record, offline)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return f"### ⚠️ Live quality\n\n.mlops/quality.json cannot be shown ({md.text(repr(err))})."


def _alias_text(registration: RegisterResult, aliases: tuple[str, ...] | None) -> str:
    if aliases is None:  # not known now: the one register set, said as of then
        return f"alias {md.code(registration.alias)} when registered"
    if not aliases:
        return "no alias now"
    names = ", ".join(md.code(a) for a in sorted(aliases))
    return f"{'aliases' if len(aliases) > 1 else 'alias'} {names}"


def _headline(
    c: ComparisonResult,
    registration: RegisterResult | None,
    aliases: tuple[str, ...] | None = None,
) -> str:
    lines = [f"## {_ICON[c.verdict]} {md.code(c.model)}: candidate {_HEADLINE[c.verdict]}"]
    failed = [check for check in c.checks if check.status == FAIL]
    if failed:
        lines += ["", "**Failing rules:**"]
        lines += [f"- {md.text(check.name)} — {md.text(check.detail)}" for check in failed]
    if registration is not None:
        lines += [
            "",
            f"Registered as **{md.text(registration.name)} v{md.text(registration.version)}** "
            f"({_alias_text(registration, aliases)}{', forced' if registration.forced else ''}).",
        ]
    elif c.verdict == FAIL:
        lines += ["", "Not registered."]
    return "\n".join(lines)


def _metrics_table(c: ComparisonResult) -> str:
    prod, sig = c.production, c.significance
    if prod is None:
        rows = ["| metric | candidate |", "|---|---:|"]
        rows += [f"| {md.cell(md.text(m))} | {v:.4f} |" for m, v in c.candidate.metrics.items()]
        return "\n".join(rows)
    rows = [
        f"| metric | candidate | production v{md.cell(md.text(prod.version))} | "
        f"Δ (candidate − production) | "
        f"{_ci_header(c)} |",
        "|---|---:|---:|---:|---|",
    ]
    for metric, value in c.candidate.metrics.items():
        p = prod.metrics[metric]
        interval = ""
        if sig is not None and sig.metric == metric:
            interval = f"[{sig.ci_low:+.4f}, {sig.ci_high:+.4f}]"
        rows.append(
            f"| {md.cell(md.text(metric))} | {value:.4f} | {p:.4f} | "
            f"{delta.cell(value - p, METRICS[metric].greater_is_better)} | {interval} |"
        )
    return "\n".join(rows)


def _ci_header(c: ComparisonResult) -> str:
    sig = c.significance
    if sig is None:
        return "CI"
    return f"{sig.confidence:.0%} CI of Δ (paired bootstrap, {sig.samples} resamples)"


def _chart(c: ComparisonResult) -> str:
    """Mermaid charts of the metrics, one per scale (GitHub renders them in comments)."""
    production = c.production.metrics if c.production is not None else None
    return "\n".join(charts.metric_charts(c.model, c.candidate.metrics, production))


def _checks(c: ComparisonResult) -> str:
    if not c.checks:
        return ""
    rows = [
        "<details><summary>All checks</summary>",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    rows += [
        f"| {md.cell(md.text(ch.name))} | {_ICON[ch.status]} {ch.status} | "
        f"{md.cell(md.text(ch.detail))} |"
        for ch in c.checks
    ]
    return "\n".join([*rows, "", "</details>"])


def _package(p: dict[str, Any]) -> str:
    """The package step's figures: parity, ONNX vs native profile, resources, image."""
    serving, native = p["profile"]["serving"], p["profile"]["native"]
    lines = [
        f"### 📦 Package: {md.text(p['name'])} v{md.text(p['version'])} as {md.text(p['format'])}"
    ]
    if p.get("note"):
        lines += ["", f"> {md.text(p['note'])}"]
    parity = p.get("parity")
    if parity:
        agree = parity["label_agreement"]
        tol = parity["tolerance"]
        lines += [
            "",
            f"Parity on {parity['rows']} rows: max \|native − ONNX\| {parity['max_abs_diff']:.2e}; "
            f"{parity.get('differing_rows', 0)} rows beyond {tol['atol']:g} + "
            f"{tol['rtol']:g}·\|native\|"
            + ("" if agree is None else f", labels agree {agree:.2%}"),
        ]
    head = f"| | {serving['engine']} |" + (
        f" {native['engine']} | ONNX advantage |" if native else ""
    )
    lines += ["", head, "|---|---:|" + ("---:|---:|" if native else "")]

    def row(label: str, key: str, fmt: str, faster_is_lower: bool) -> str:
        ours = serving[key]
        cells = f"| {label} | {fmt.format(ours)} |"
        if native:
            theirs = native[key]
            ratio = (theirs / ours if faster_is_lower else ours / theirs) if ours and theirs else 0
            cells += f" {fmt.format(theirs)} | {ratio:.1f}x |"
        return cells

    lines += [row(f"single row {q}", f"{q}_ms", "{:.3f} ms", True) for q in ("p50", "p95", "p99")]
    for batch in serving["rows_per_s"]:
        ours = serving["rows_per_s"][batch]
        cells = f"| rows/s, batch {batch} | {ours:,.0f} |"
        if native:
            theirs = native["rows_per_s"][batch]
            cells += f" {theirs:,.0f} | {ours / theirs:.1f}x |"
        lines.append(cells)
    lines.append(row("peak RSS of a scoring process", "peak_rss_mb", "{:.0f} MiB", True))
    lines.append(row("model size", "size_bytes", "{:,} B", True))
    rec = p["profile"]["recommendation"]
    image = p["image"]
    built = (
        f"{md.code(image['tag'])} {md.text(image['status'])}"
        if image["status"] != "skipped"
        else f"{md.code(image['tag'])} not built: {md.text(image['reason'])}"
    )
    lines += [
        "",
        f"Recommended container resources: cpu `{rec['cpu_request']}`, memory "
        f"`{rec['memory_request']}` (limit `{rec['memory_limit']}`) — {rec['why']}.",
        f"Image: {built}. Model files sha256 {md.code(str(p['model_sha256'])[:12])}.",
    ]
    return "\n".join(lines)


_DEPLOY_ICONS = {"serving": "🚀", "ab": "🆎", "rolled_back": "↩️", "unchanged": "⏸️"}


def _deploy(d: dict[str, Any]) -> str:
    """The deploy step: gates, approver, each rollout step's split and health, the outcome."""
    icon = _DEPLOY_ICONS.get(d["status"], "📄")
    t = md.text
    after = f", replacing v{t(d['previous'])}" if d.get("previous") else ""
    lines = [
        f"### {icon} Deploy: v{t(d['version'])} → {t(d['env'])} ({t(d['target'])}): "
        f"**{t(d['status'].replace('_', ' '))}**",
        "",
        f"By {t(d['by'])} at {t(d['at'])}{after}."
        + (f" Alias {md.code(d['alias'])} → v{t(d['version'])}." if d.get("alias") else ""),
    ]
    approval = d.get("approval")
    if approval:
        lines.append(
            f"Approved by **{t(approval['by'])}** at {t(approval['at'])} "
            f"({t(approval['source'])}): {t(approval['reason'])}"
        )
    for gate in d["gates"]:
        mark = "✅" if gate["passed"] else "❌"
        lines.append(f"- {mark} gate {t(gate['name'])}: {t(gate['detail'])}")
    if d["steps"]:
        lines += [
            "",
            "| step | split | requests to new | 5xx | p99 new | p99 current | health |",
            "|---:|---|---:|---:|---:|---:|---|",
        ]
        for step in d["steps"]:
            new, cur = step["new"], step["current"]
            split = md.cell(", ".join(f"v{t(v)} {w:g}%" for v, w in step["weights"].items()))
            health = (
                "✅ healthy"
                if step["passed"]
                else "❌ " + "; ".join(md.cell(t(r)) for r in step["reasons"])
            )
            lines.append(
                f"| {step['percent']:g}% | {split} | {new['requests']} | "
                f"{new['server_errors']} | {_p99(new['p99_ms'])} | "
                f"{_p99(cur['p99_ms']) if cur else '—'} | {health} |"
            )
    final = ", ".join(f"v{t(v)} {w:g}%" for v, w in d["split"].items()) or "none"
    where = d.get("url") or d.get("manifests") or ""
    lines += ["", f"Split now: {final}" + (f" at {md.code(where)}" if where else "") + "."]
    if d.get("note"):
        lines.append(f"> {t(d['note'])}")
    return "\n".join(lines)


def _p99(value: float | None) -> str:
    return "n/a" if value is None else f"≤ {value:g} ms"


def _lineage(c: ComparisonResult, registration: RegisterResult | None, tags: dict[str, str]) -> str:
    commit = tags.get("mlops.git.commit")
    repo = tags.get("mlops.git.repository", "")
    if commit and _SAFE_URL.match(repo) and re.fullmatch(r"[0-9a-f]{7,64}", commit):
        commit_text = f"[`{commit[:10]}`]({repo.removesuffix('.git')}/commit/{commit})"
    else:
        commit_text = md.code(commit[:10]) if commit else "—"
    if tags.get("mlops.git.dirty") == "true":
        commit_text += " (uncommitted changes)"
    rows = [
        ("commit", commit_text),
        ("branch", md.code(tags["mlops.git.branch"]) if "mlops.git.branch" in tags else "—"),
        ("pull request", _pr(tags.get("mlops.ci.pr"))),
        ("triggered by", md.text(tags.get("mlops.ci.actor", "—"))),
        ("data fingerprint", _short(tags.get("mlops.data.fingerprint"))),
        ("environment lock", _short(tags.get("mlops.env.sha256"))),
        ("training command", md.text(tags.get(TAG_ISOLATION, "—"))),
        ("MLflow run", md.code(c.candidate.run_id)),
        (
            "model version",
            md.text(f"{registration.name} v{registration.version}")
            if registration
            else "not registered",
        ),
    ]
    if c.production is not None:
        rows.append(("production", md.text(f"{c.model} v{c.production.version}")))
    if _SAFE_URL.match(tags.get("mlops.ci.run_url", "")):
        rows.append(("CI run", f"[logs]({tags['mlops.ci.run_url']})"))
    table = ["| lineage | |", "|---|---|", *(f"| {k} | {md.cell(v)} |" for k, v in rows)]
    return "\n".join(table)


def _stages(text: str | None) -> str:
    """The pipeline's stages as a flowchart (which ran, which were cached), from the run's
    ``lineage/stages.json``; nothing when the run has none or it cannot be read."""
    try:
        graph = json.loads(text) if text else None
    except ValueError:
        return ""
    if not isinstance(graph, dict):
        return ""
    chart = charts.stages_flowchart(graph)
    return "\n".join(["**Pipeline stages** (this run)", "", *chart]) if chart else ""


def _short(sha: str | None) -> str:
    return md.code(f"sha256:{sha[:12]}") if sha else "—"


def _pr(number: str | None) -> str:
    return f"#{number}" if number and number.isdigit() else md.text(number or "—")
