"""The pipeline steps, in order. Each name is the same everywhere: `mlops-ci <name>`,
`mlops_ci/steps/<name>.py`, and (as they land) `actions/<name>/` and
`templates/azure-pipelines/<name>.yml`; tests/unit/test_steps.py holds them together.
"""

STEPS: tuple[str, ...] = (
    "train",
    "compare",
    "register",
    "promote",
    "package",
    "deploy",
    "drift",
    "report",
)
