"""Pipeline stages (as DVC's ``dvc/stage/``): the spec from mlops.yaml or a dvc.yaml, the
content-addressed cache, the run in order, and the user's command in its child process."""
