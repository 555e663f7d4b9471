"""The `mlops-ci` command: one short function per verb; heavy libraries load inside verbs only.

The verbs live in a module per group (project, registry, serving, deployment, monitor,
reporting) and share their options and helpers through ``common``; this module is the group,
its entry point and the list of verbs.

Every failure is an MlopsError caught in ``main`` and printed as one line (plus a hint), with
the exit code of its class: 1 the gate said no, 2 bad input, 3 an outside service failed. Every
line printed, the ``--debug`` traceback too, goes through ``ui.printable`` and so shows no
credential (``credentials.redact_text``).
"""

from __future__ import annotations

import io
import sys
import traceback

import click

from mlops_ci import __version__
from mlops_ci.cli.common import defer_gc, finish_fast, mask_secrets
from mlops_ci.cli.deployment import approve, deploy, rollback, status, undeploy
from mlops_ci.cli.monitor import batch_score, drift, quality
from mlops_ci.cli.project import compare, demo, init, train, validate
from mlops_ci.cli.registry import delete_version, lineage, promote, register, tag, versions
from mlops_ci.cli.reporting import report
from mlops_ci.cli.serving import front, package, serve
from mlops_ci.errors import ConfigError, MlopsError, Terminated
from mlops_ci.ui.printable import echo, single_line

INTERNAL_ERROR = 4


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlops-ci")
@click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """CI/CD for machine-learning models.

    Train a model (cached), compare it fairly with the model in production, register it in the
    MLflow model registry and promote it. Start with `mlops-ci demo`, or `mlops-ci init` in
    your project.
    """
    ctx.obj = {"debug": debug}
    mask_secrets()


cli.add_command(init)
cli.add_command(validate)
cli.add_command(train)
cli.add_command(compare)
cli.add_command(demo)
cli.add_command(register)
cli.add_command(promote)
cli.add_command(versions)
cli.add_command(lineage)
cli.add_command(tag)
cli.add_command(delete_version)
cli.add_command(package)
cli.add_command(serve)
cli.add_command(front)
cli.add_command(deploy)
cli.add_command(approve)
cli.add_command(rollback)
cli.add_command(undeploy)
cli.add_command(status)
cli.add_command(drift)
cli.add_command(quality)
cli.add_command(batch_score)
cli.add_command(report)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    if argv is None:  # this process is the command (not a caller's, such as a test's)
        defer_gc()
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="mlops-ci", standalone_mode=False)
        if argv is None:
            finish_fast()
    except click.exceptions.Abort:
        echo("aborted", err=True)
        sys.exit(130)
    except Terminated as err:  # SIGTERM/SIGINT to a verb that ends cleanly (cli.signals)
        echo(f"error: {err}; stopped", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        shown = io.StringIO()
        err.show(file=shown)  # usage and "Error: ...", which may quote what was typed
        echo(shown.getvalue().rstrip("\n"), err=True)
        sys.exit(2)
    except MlopsError as err:
        if debug:
            _print_traceback()
        from mlops_ci.ci import error_annotations

        for command in error_annotations(err):
            click.echo(command)
        lines = err.problems if isinstance(err, ConfigError) else [str(err)]
        for line in lines:
            echo(f"error: {single_line(line)}", err=True)
        if err.hint:
            echo(f"hint: {single_line(err.hint)}", err=True)
        sys.exit(err.exit_code)
    except Exception as err:  # a bug in mlops-ci, not the user's input
        if debug:
            _print_traceback()
        echo(f"internal error: {type(err).__name__}: {single_line(err)}", err=True)
        echo("hint: rerun with --debug for the traceback and report it", err=True)
        sys.exit(INTERNAL_ERROR)


def _print_traceback() -> None:
    """The traceback of the error being handled (``--debug``), as printable text: an error
    message in it may quote a URL with its credentials."""
    echo(traceback.format_exc().rstrip("\n"), err=True)
