"""One module per verb, named as the verb: `mlops-ci delete-version` is
``steps/delete_version.py``, whose function of the same name does the work and returns data
(cli/ renders it). ``STEPS`` are the pipeline's steps in order: each also has
``templates/azure-pipelines/<name>.yml`` and ``actions/<name>/`` (promote runs through the
umbrella action, ``command: promote``). ``VERBS`` names, for every verb of the CLI, the
function that does its work; the two verbs that run a server are the serving adapter's own
(`serve`, `front`). tests/unit/test_steps.py holds them together.
"""

STEPS: tuple[str, ...] = (
    "train",
    "compare",
    "register",
    "promote",
    "package",
    "deploy",
    "drift",
    "quality",
    "report",
)

# verb -> "module:function" (the module's path under mlops_ci).
VERBS: dict[str, str] = {
    **{name: f"steps.{name}:{name}" for name in STEPS},
    "init": "steps.init:init_project",
    "validate": "steps.validate:validate",
    "demo": "steps.demo:run_demo",
    "approve": "steps.approve:approve",
    "rollback": "steps.rollback:rollback",
    "undeploy": "steps.undeploy:undeploy",
    "status": "steps.status:status",
    "versions": "steps.versions:versions",
    "tag": "steps.tag:tag",
    "delete-version": "steps.delete_version:delete_version",
    "lineage": "steps.lineage:lineage",
    "batch-score": "steps.batch_score:batch_score",
    "serve": "serve.command:start",
    "front": "serve.front:run_front",
}
