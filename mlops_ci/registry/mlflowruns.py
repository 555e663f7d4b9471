"""The MLflow adapter's tracking runs: found by tag, created RUNNING, logged, and ended
FINISHED, FAILED or KILLED, all through ``MlflowClient`` calls that are bounded and mapped
(``mlflowcalls``); MLflow's fluent API (an "active run" of this process, unbounded and
unmapped) is never used."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from mlops_ci.errors import InputError, MlopsError
from mlops_ci.registry import (
    EVALUATION_ARTIFACT,
    TAG_CACHE_KEY,
    TAG_COMPLETE,
    TAG_MODEL_URI,
    NewRun,
    RunRecord,
)
from mlops_ci.registry.mlflowcalls import MlflowCalls
from mlops_ci.registry.mlflowmodel import load_run_model, log_model, model_signature
from mlops_ci.runner import ModelRunner

if TYPE_CHECKING:
    from mlflow.entities import Run


class MlflowRuns(MlflowCalls):
    """Runs of the registry's experiments; ``artifact_location`` is where a new experiment
    keeps its artifacts."""

    artifact_location: str

    def _experiment_id(self, name: str, create: bool) -> str | None:
        experiment = self._call(self.client.get_experiment_by_name, name)
        if experiment is not None:
            return str(experiment.experiment_id)
        if not create:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return str(
                self._run(
                    self.client.create_experiment, name, artifact_location=self.artifact_location
                )
            )
        except MlflowException:  # created meanwhile by a concurrent job
            experiment = self._call(self.client.get_experiment_by_name, name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def find_cached_run(self, experiment: str, cache_key: str) -> RunRecord | None:
        return self.find_run_with_tag(experiment, TAG_CACHE_KEY, cache_key)

    def find_run_with_tag(self, experiment: str, key: str, value: str) -> RunRecord | None:
        """The newest complete, finished run of ``experiment`` tagged ``key=value``."""
        exp_id = self._experiment_id(experiment, create=False)
        if exp_id is None:
            return None
        query = (
            f"tags.`{key}` = '{value}' and tags.`{TAG_COMPLETE}` = 'true' "
            "and attributes.status = 'FINISHED'"
        )
        runs = self._call(
            self.client.search_runs, [exp_id], query, max_results=1, order_by=["start_time DESC"]
        )
        return _run_record(runs[0]) if runs else None

    def start_run(self, experiment: str, tags: dict[str, str]) -> str:
        """A new RUNNING run of ``experiment`` (created if missing) carrying ``tags`` from its
        first moment, with the context tags MLflow's own runs get (user, source)."""
        from mlflow.tracking.context import registry as context

        exp_id = self._experiment_id(experiment, create=True)
        created = self._call(self.client.create_run, exp_id, tags=context.resolve_tags(tags))
        return str(created.info.run_id)

    def end_runs(self, experiment: str, key: str, value: str, status: str) -> list[str]:
        """Every run of ``experiment`` tagged ``key=value`` that is still RUNNING, ended with
        ``status`` (FINISHED, FAILED or KILLED); their ids. A run whose creation was lost
        (the answer never came) is found by its tag as well as one whose id is known."""
        exp_id = self._experiment_id(experiment, create=False)
        if exp_id is None:
            return []
        query = f"tags.`{key}` = '{value}' and attributes.status = 'RUNNING'"
        ended = []
        for run in self._call(self.client.search_runs, [exp_id], query, max_results=100):
            self._call(self.client.set_terminated, run.info.run_id, status)
            ended.append(str(run.info.run_id))
        return ended

    def log_run(self, run: NewRun) -> RunRecord:
        """Params, metrics, tags, artifacts and the model logged into ``run.run_id`` (or a run
        made here, after the model loaded: a bad file then records nothing), ended FINISHED
        with mlops-ci's completion tag. The model is loaded and checked in the model runner's
        child, never here (this process holds the credentials). A failure leaves the run
        given RUNNING for its caller to end; a run made here is ended FAILED."""
        with ModelRunner(run.isolation) as runner:
            model = load_run_model(runner, run)
            signature = model_signature(model, run.example_features)
            evaluation = run.evaluate(model) if run.evaluate is not None else None
            if run.run_id is not None:
                return self._logged(run.run_id, run, model, signature, evaluation)
            run_id = self.start_run(run.experiment, run.tags)
            try:
                return self._logged(run_id, run, model, signature, evaluation)
            except BaseException:
                with contextlib.suppress(MlopsError):
                    self._call(self.client.set_terminated, run_id, "FAILED")
                raise

    def _logged(
        self, run_id: str, run: NewRun, model: Any, signature: Any, evaluation: str | None
    ) -> RunRecord:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self._call(
            self.client.log_batch,
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in run.metrics.items()],
            params=[Param(k, str(v)) for k, v in run.params.items()],
            tags=[RunTag(k, str(v)) for k, v in run.tags.items()],
        )
        for folder, path in run.artifacts.items():
            if path.is_dir():  # e.g. a stage's record and outs, under stages/NAME/
                self._transfer(self.client.log_artifacts, run_id, str(path), folder)
            else:
                self._transfer(self.client.log_artifact, run_id, str(path), folder)
        if evaluation is not None:
            self._transfer(self.client.log_text, run_id, evaluation, EVALUATION_ARTIFACT)
        exp_id = self._experiment_id(run.experiment, create=True)
        # The logged model is made here, in the run's experiment: MLflow's Model.log, given a
        # run id and no active run, would make it in the default experiment ("0").
        logged = self._call(
            self.client.create_logged_model,
            exp_id,
            name="model",
            source_run_id=run_id,
            params={k: str(v) for k, v in run.params.items()},
        )
        model_uri = self._transfer(log_model, model, signature, run_id, logged.model_id)
        done = [RunTag(TAG_MODEL_URI, model_uri), RunTag(TAG_COMPLETE, "true")]
        self._call(self.client.log_batch, run_id, tags=done)
        self._call(self.client.set_terminated, run_id, "FINISHED")
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        found = self._lookup(self.client.get_run, run_id)
        if found is None:
            raise InputError(
                f"run '{run_id}' not found in {self.describe()}",
                hint="pass the run id `mlops-ci train` printed",
            )
        return _run_record(found)

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        self._call(self.client.log_batch, run_id, metrics=batch)


def _run_record(run: Run) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        status=run.info.status,
        params=dict(run.data.params),
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        tags=dict(run.data.tags),
    )
