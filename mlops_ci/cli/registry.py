"""The registry verbs: register, promote, versions, lineage, tag, delete-version."""

from __future__ import annotations

from pathlib import Path

import click

from mlops_ci.cli.common import (
    CONFIG_OPTION,
    VERSION_OPTION,
    actor,
    load,
    notify,
    open_registry,
    warn,
    who_and_why,
)
from mlops_ci.ui.printable import echo


@click.command()
@CONFIG_OPTION
@click.option(
    "--run",
    "run_id",
    default=None,
    help="Run to register (default: the run of the last `mlops-ci train` in this checkout).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Register even without a passing comparison (recorded); never a run that did not finish.",
)
def register(config_path: Path | None, run_id: str | None, force: bool) -> None:
    """Register the compared run as a new model version with lineage tags; alias it `candidate`."""
    from mlops_ci.ci import emit_outputs
    from mlops_ci.steps.register import register as register_step

    config = load(config_path)
    result = register_step(config, open_registry(config), run_id, force=force)
    what = "already registered as" if result.existing else "registered"
    echo(
        f"{what} {result.name} v{result.version} (verdict {result.verdict}); "
        f"alias '{result.alias}' -> v{result.version}"
    )
    emit_outputs({"model_name": result.name, "model_version": result.version})
    if not result.existing:
        notify(
            config,
            "model.registered",
            f"{result.name}/{result.version}",
            {
                "model": result.name,
                "version": result.version,
                "run_id": result.run_id,
                "verdict": result.verdict,
                "alias": result.alias,
            },
        )


@click.command()
@CONFIG_OPTION
@VERSION_OPTION
@who_and_why("promotes")
@click.option("--force", is_flag=True, help="Promote even a version without a passing comparison.")
def promote(
    config_path: Path | None, version: str, by: str | None, reason: str, force: bool
) -> None:
    """Move the production alias to a model version, recording who, when and why."""
    from mlops_ci.steps.promote import promote as promote_step

    config = load(config_path)
    result = promote_step(config, open_registry(config), version, actor(by), reason, force=force)
    if result.unchanged:
        echo(
            f"{result.name}: v{result.version} already holds alias '{result.alias}' (promoted by "
            f"{result.by} at {result.at}: {result.reason}); nothing moved"
        )
    else:
        before = f"v{result.previous}" if result.previous else "nothing"
        echo(
            f"{result.name}: alias '{result.alias}' {before} -> v{result.version} "
            f"(by {result.by}: {result.reason})"
        )
    for line in result.recorded:  # records this promote wrote for earlier ones, or its own
        echo(f"recorded: {line}")
    if result.unchanged:
        return
    if result.answer_lost:
        echo(
            f"the alias write's answer was lost; read back, '{result.alias}' names "
            f"v{result.version}: promoted"
        )
    if result.overtaken_by is not None:
        warn(
            f"v{result.version} held '{result.alias}' only until a concurrent promotion moved "
            f"it to v{result.overtaken_by or '?'}"
        )
    if result.unrecorded:
        warn(
            f"the alias moved, but its records were not all written ({result.unrecorded}); "
            "the next promote writes them"
        )
    notify(
        config,
        "model.promoted",
        f"{result.name}/{result.version}",
        {
            "model": result.name,
            "version": result.version,
            "alias": result.alias,
            "previous": result.previous,
            "by": result.by,
            "reason": result.reason,
        },
    )


@click.command()
@CONFIG_OPTION
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only versions with this tag (repeat to require several), e.g. "
    "--tag mlops.git.branch=main or --tag team=fraud.",
)
@click.option("--alias", default=None, help="Only the version this alias names, e.g. production.")
@click.option(
    "--verdict",
    type=click.Choice(["pass", "fail", "no-baseline"]),
    default=None,
    help="Only versions whose comparison (at register time) gave this verdict.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="At most this many versions, newest first.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table for people, JSON for scripts.",
)
def versions(
    config_path: Path | None,
    tags: tuple[str, ...],
    alias: str | None,
    verdict: str | None,
    limit: int,
    fmt: str,
) -> None:
    """List the model's registered versions, newest first: aliases, verdict, primary metric,
    who registered each and when, and where it is deployed. Tag filters run in the registry,
    so this stays quick on thousands of versions."""
    from mlops_ci.steps.versions import parse_pairs
    from mlops_ci.steps.versions import versions as versions_step

    wanted = parse_pairs(tags, "--tag", search=True)
    config = load(config_path)
    rows = versions_step(config, open_registry(config), wanted, alias, verdict, limit)
    if fmt == "json":
        import json

        echo(json.dumps([r.to_json() for r in rows], indent=2))
        return
    if not rows:
        echo("no version matches")
        return
    metric = rows[0].metric
    table = [["VERSION", "ALIASES", "VERDICT", metric.upper(), "REGISTERED", "BY", "DEPLOYED"]]
    for r in rows:
        deployed = ", ".join(f"{env}:{state}" for env, state in r.deployed.items())
        table.append(
            [
                f"v{r.version}",
                ",".join(r.aliases) or "-",
                r.verdict or "-",
                r.value or "-",
                r.registered_at or "-",
                r.registered_by or "-",
                deployed or "-",
            ]
        )
    _echo_table(table)


def _echo_table(table: list[list[str]]) -> None:
    """Rows as aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command()
@CONFIG_OPTION
@click.argument("ref", metavar="VERSION|@ALIAS")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "md", "json"]),
    default="table",
    show_default=True,
    help="Text for a terminal, markdown for a page or a PR, JSON for scripts.",
)
def lineage(config_path: Path | None, ref: str, fmt: str) -> None:
    """Show one version's audit trail: the commit, data and environment it was trained from and
    by which CI run; how it compared; who registered, approved, promoted, deployed and rolled
    it back, when and why, in time order; and where it serves now. What no step recorded is
    listed as missing."""
    from mlops_ci.steps.lineage import lineage, markdown

    config = load(config_path)
    found = lineage(config, open_registry(config), ref.removeprefix("v"))  # v3 reads as 3
    if fmt == "json":
        import json

        echo(json.dumps(found.to_json(), indent=2))
        return
    if fmt == "md":
        echo(markdown(found), nl=False)
        return
    aliases = f" ({', '.join('@' + a for a in found.aliases)})" if found.aliases else ""
    echo(f"{found.name} v{found.version}{aliases}  run {found.run_id or 'none'}")
    echo("\ntrained from")
    for key, value in found.trained.items():
        echo(f"  {key:<24} {value}")
    if found.params:
        echo(f"  {'params':<24} " + ", ".join(f"{k}={v}" for k, v in found.params.items()))
    if found.inputs is not None:
        echo(f"  {'inputs':<24} {len(found.inputs)} files")
    echo("\nhow it compared")
    for key, value in found.compared.items():
        echo(f"  {key:<24} {value}")
    echo("\nhistory (UTC)")
    if found.events:
        _echo_table([["  WHEN", "WHAT", "BY", "DETAIL"]]
                    + [["  " + e.at, e.what, e.by, e.detail] for e in found.events])  # fmt: skip
    echo("\nserving now: " + (", ".join(f"{e} ({w})" for e, w in found.serving.items())
                                    or "nowhere"))  # fmt: skip
    if found.missing:
        echo("\nnot recorded")
        for line in found.missing:
            echo(f"  {line}")


@click.command()
@CONFIG_OPTION
@VERSION_OPTION
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
def tag(config_path: Path | None, version: str, pairs: tuple[str, ...]) -> None:
    """Set your own tags on a model version (e.g. team=fraud reviewed=yes), to find it later
    with `mlops-ci versions --tag`. The mlops. and mlflow. namespaces belong to the tools."""
    from mlops_ci.steps.tag import tag as tag_step
    from mlops_ci.steps.versions import parse_pairs

    wanted = parse_pairs(pairs, "KEY=VALUE")
    config = load(config_path)
    done = tag_step(config, open_registry(config), version, wanted)
    shown = ", ".join(f"{k}={v}" for k, v in done.tags.items())
    echo(f"{done.name} v{done.version}: {shown}")


@click.command("delete-version")
@CONFIG_OPTION
@VERSION_OPTION
def delete_version(config_path: Path | None, version: str) -> None:
    """Delete a model version from the registry; refused while any environment runs it."""
    from mlops_ci.steps.delete_version import delete_version as delete_step

    config = load(config_path)
    number = delete_step(config, open_registry(config), version)
    echo(f"deleted {config.model.name} v{number}")
