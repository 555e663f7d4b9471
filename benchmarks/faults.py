"""Issue 40's figures: what killed verbs and a failing registry or disk leave behind.

Runs the fault suite's scenarios (tests/support/faults.py) with --tries seeded tries each, side
by side against one real `mlflow server` (behind fault proxies) and one local deployment:
`train` killed (kill -9 and SIGTERM in turn, during the command and while it logs, with and
without the sandbox), `register` and `promote` killed (-9) after a seeded number of registry
requests, as many pairs of concurrent promotes, a hung and a lost alias write, `deploy` killed
mid-canary and in the 100 % window, each followed by the next verb; each registry outage case
(runs/create hangs, 503 on log-batch) --outage-tries times; the input log of `mlops-ci serve` on
a disk that fills up, --input-log-tries times. It prints every try that broke something and,
per verb and in all, the figures of the issue's "Done when": records contradicting the
registry, stale runs used, training processes left running, exits 4 (or a traceback), good
input-log rows lost (and other broken promises: an exit code or a time bound).

Target (issue 40): every figure 0. Exit status 0 when met, 1 when not.

Needs the test extra, installed editable (`pip install -e '.[test]'`: tests/ is importable).
Run: python benchmarks/faults.py [--tries 20] [--seed 40] [--outage-tries 1]
     [--input-log-tries 4] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=20, help="kills of each verb")
    parser.add_argument("--seed", type=int, default=40)
    parser.add_argument("--outage-tries", type=int, default=1, help="of each outage case")
    parser.add_argument("--input-log-tries", type=int, default=4)
    parser.add_argument("--verbose", action="store_true", help="print every try")
    args = parser.parse_args()
    # The setups train in this process: MLflow's "View run ... at URL" lines are not figures.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    from tests.support.fault_harness import Outcome
    from tests.support.faults import GROUPS, Tries, campaign, figures

    tries = Tries(
        train=args.tries,
        register=args.tries,
        promote=args.tries,
        deploy=args.tries,
        outage=args.outage_tries,
        input_log=args.input_log_tries,
    )
    started = time.monotonic()
    results: dict[str, list[Outcome]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp,
        campaign(Path(tmp), tries, args.seed) as futures,
    ):
        for group in GROUPS:
            results[group] = futures[group].result()
            for outcome in results[group]:
                if args.verbose or outcome.problems():
                    print(outcome, flush=True)
    seconds = time.monotonic() - started
    broken = sum(bool(o.problems()) for group in results.values() for o in group)
    print(f"\nseed {args.seed}, {args.tries} tries per verb, {seconds:.0f} s")
    print(figures(results))
    print(f"target: every figure 0 [{'met' if not broken else f'NOT met: {broken} tries'}]")
    raise SystemExit(1 if broken else 0)


if __name__ == "__main__":
    main()
