"""batch-score with the packaged iris model: one machine and a Dask LocalCluster give the same
predictions as scoring the whole table in memory; rejects are written; a killed job resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from mlops_ci.batch.score import _model
from mlops_ci.errors import GateFailed, InputError
from mlops_ci.serve.model import read_spec
from mlops_ci.steps.batch_score import batch_score
from tests.integration.conftest import Packaged

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def table(packaged: Packaged, rows: int, seed: int = 0) -> pd.DataFrame:
    frame = packaged.test_rows.sample(rows, replace=True, random_state=seed).reset_index(drop=True)
    frame = frame + np.random.default_rng(seed).normal(0, 0.3, size=frame.shape)
    frame.insert(0, "customer", [f"c{i:06d}" for i in range(rows)])
    return frame


def in_memory(packaged: Packaged, frame: pd.DataFrame) -> pd.DataFrame:
    """The reference answer: one onnxruntime call on the whole table."""
    sess = ort.InferenceSession(str(packaged.v2 / "model.onnx"), providers=["CPUExecutionProvider"])
    labels, proba = sess.run(None, {"input": frame[FEATURES].to_numpy(np.float32)})
    return pd.DataFrame(
        {"customer": frame["customer"], "prediction": labels, "probability": proba.max(axis=1)}
    )


@pytest.mark.parametrize(
    ("engine", "workers", "fmt"),
    [("local", 1, "csv"), ("local", 2, "parquet"), ("dask", 2, "csv")],
)
def test_engines_match_scoring_the_whole_table_in_memory(
    packaged: Packaged, tmp_path: Path, engine: str, workers: int, fmt: str
) -> None:
    frame = table(packaged, 5000)
    _model(str(packaged.v2), 1)  # this process has a session: forked workers build their own
    source = tmp_path / f"rows.{fmt}"
    if fmt == "csv":
        frame.to_csv(source, index=False)
    else:
        frame.to_parquet(source, row_group_size=1500)
    out = tmp_path / "scored.parquet"
    result = batch_score(read_spec(packaged.v2), source, out, engine, workers, chunk_rows=700)
    assert (result.rows, result.scored, result.rejected) == (5000, 5000, 0)
    assert result.tasks == (8 if fmt == "csv" else 10) and result.resumed == 0
    got = pd.read_parquet(out)
    expected = in_memory(packaged, frame)
    assert list(got.columns) == ["customer", "prediction", "probability"]
    assert got["customer"].tolist() == expected["customer"].tolist()  # order kept
    assert got["prediction"].tolist() == expected["prediction"].tolist()
    assert np.allclose(got["probability"], expected["probability"], atol=1e-6)
    # One model load per worker, however many chunks it scored: the local engine's workers
    # are this process (slot 1) and processes forked from it (slots 2..), each loading its
    # own (one worker: this thread, slot 0, which loaded the model above).
    assert set(result.model_loads.values()) == {1}
    assert len(result.model_loads) <= workers
    if engine == "local" and workers > 1:
        assert f"{os.getpid()}.1" in result.model_loads
        assert {w.split(".")[1] for w in result.model_loads} <= {"1", "2"}
        assert len({w.split(".")[0] for w in result.model_loads}) == len(result.model_loads)
    elif engine == "local":
        assert set(result.model_loads) == {str(os.getpid())}
    if engine == "dask":
        assert len(result.workers) == workers and len(result.model_loads) >= 1
    assert not (tmp_path / "scored.parquet.parts").exists()


def test_rejected_rows_are_counted_written_and_gate_the_job(
    packaged: Packaged, tmp_path: Path
) -> None:
    frame = table(packaged, 1000).astype({"petal_length": object, "sepal_width": object})
    frame.loc[10, "petal_length"] = "n/a"
    frame.loc[20, "sepal_width"] = ""
    frame.loc[30, "petal_length"] = "1e400"
    frame.to_csv(tmp_path / "rows.csv", index=False)
    spec = read_spec(packaged.v2)
    with pytest.raises(GateFailed, match=r"3 of 1000 rows rejected \(0.30%\) > max reject rate"):
        batch_score(spec, tmp_path / "rows.csv", tmp_path / "out.csv", chunk_rows=300)
    rejects = pd.read_parquet(tmp_path / "out.rejects.parquet")
    assert rejects["customer"].tolist() == ["c000010", "c000020", "c000030"]
    assert rejects["error"].tolist() == [
        "petal_length: 'n/a' is not a finite number",
        "sepal_width: missing",
        "petal_length: '1e400' is not a finite number",
    ]
    scored = pd.read_csv(tmp_path / "out.csv")
    assert len(scored) == 997 and "c000010" not in set(scored["customer"])
    again = batch_score(
        spec, tmp_path / "rows.csv", tmp_path / "out2.csv", chunk_rows=300, max_reject_rate=0.01
    )
    assert again.rejected == 3 and again.reject_rate == pytest.approx(0.003)


def test_rows_that_do_not_parse_or_hold_nulls_are_rejected_with_their_fields(
    packaged: Packaged, tmp_path: Path
) -> None:
    spec = read_spec(packaged.v2)
    frame = table(packaged, 400)
    lines = frame.to_csv(index=False).splitlines()
    lines[5] = "c000004,1.0,2.0"  # too few fields
    lines[9] = lines[9] + ",9.9"  # too many
    (tmp_path / "rows.csv").write_text("\n".join(lines) + "\n")
    result = batch_score(
        spec, tmp_path / "rows.csv", tmp_path / "out.parquet", chunk_rows=150, max_reject_rate=0.01
    )
    assert (result.rows, result.scored, result.rejected) == (400, 398, 2)
    rejects = pd.read_parquet(tmp_path / "out.rejects.parquet")
    assert rejects["customer"].tolist() == ["c000004", "c000008"]
    assert rejects["error"].tolist() == [
        "malformed CSV row: 3 fields, the header has 5",
        "malformed CSV row: 6 fields, the header has 5",
    ]
    assert rejects.loc[0, "sepal_width"] == "2.0" and rejects.loc[0, "petal_width"] == ""
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert len(scored) == 398 and {"c000004", "c000008"}.isdisjoint(scored["customer"])

    typed = frame.copy()
    typed.loc[[3, 250], "petal_width"] = np.nan  # Parquet nulls in a float column
    typed.to_parquet(tmp_path / "rows.parquet", row_group_size=100)
    result = batch_score(
        spec,
        tmp_path / "rows.parquet",
        tmp_path / "typed",
        "local",
        2,
        chunk_rows=100,
        max_reject_rate=0.01,
    )
    assert (result.rows, result.rejected) == (400, 2)
    rejects = pd.read_parquet(tmp_path / "typed" / "rejects-000000.parquet")
    assert rejects["customer"].tolist() == ["c000003"]
    assert rejects["error"].tolist() == ["petal_width: missing"]
    assert rejects["sepal_length"].tolist() == [str(typed.loc[3, "sepal_length"])]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_job_resumes_to_the_same_output(
    packaged: Packaged, tmp_path: Path, workers: int
) -> None:
    frame = table(packaged, 60_000, seed=1)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    whole = tmp_path / "whole.parquet"
    batch_score(read_spec(packaged.v2), tmp_path / "rows.csv", whole, chunk_rows=2000)

    out = tmp_path / "resumed.parquet"
    parts = tmp_path / "resumed.parquet.parts"
    command = [
        sys.executable,
        "-m",
        "mlops_ci",
        "batch-score",
        "--model-dir",
        str(packaged.v2),
        "--input",
        str(tmp_path / "rows.csv"),
        "--output",
        str(out),
        "--chunk-rows",
        "2000",
        "--processes",
        str(workers),
    ]
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(parts.glob("part-*.parquet"))) < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait(10)
    finished = len(list(parts.glob("part-*.parquet")))
    assert 5 <= finished < 30 and not out.exists(), "killed part-way through"
    time.sleep(0.5)  # a forked worker went with the job: no part is written after its end
    assert len(list(parts.glob("part-*.parquet"))) == finished

    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"resumed: {finished} of 30 chunks were already scored" in done.stdout
    assert "60,000 rows: 60,000 scored, 0 rejected" in done.stdout
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(whole))


def test_a_resumed_job_keeps_its_cut_whatever_the_processes(
    packaged: Packaged, tmp_path: Path
) -> None:
    # The default cut depends on the workers (8 tasks each); a job started with one and
    # resumed with two keeps the cut its finished parts were made with.
    frame = table(packaged, 200_000, seed=2)
    source = tmp_path / "rows.parquet"
    frame.to_parquet(source, row_group_size=100_000)
    spec = read_spec(packaged.v2)
    whole = batch_score(spec, source, tmp_path / "whole.parquet", "local", 1)
    assert whole.tasks == 8  # 25,000 rows each
    parts = tmp_path / "out"
    batch_score(spec, source, parts, "local", 1)
    for index in (1, 4, 7):
        (parts / f"part-{index:06d}.parquet").unlink()
    resumed = batch_score(spec, source, parts, "local", 2)
    assert (resumed.tasks, resumed.resumed, resumed.rows) == (8, 5, 200_000)
    written = pd.concat(pd.read_parquet(p) for p in sorted(parts.glob("part-*.parquet")))
    pd.testing.assert_frame_equal(
        written.reset_index(drop=True), pd.read_parquet(tmp_path / "whole.parquet")
    )


def test_bad_input_and_another_jobs_folder_are_refused(packaged: Packaged, tmp_path: Path) -> None:
    spec = read_spec(packaged.v2)
    pd.DataFrame({"customer": ["a"], "sepal_length": [1.0]}).to_csv(
        tmp_path / "narrow.csv", index=False
    )
    with pytest.raises(
        InputError, match="feature column\\(s\\) sepal_width, petal_length, petal_width missing"
    ):
        batch_score(spec, tmp_path / "narrow.csv", tmp_path / "o1")
    table(packaged, 100).to_csv(tmp_path / "a.csv", index=False)
    table(packaged, 200).to_csv(tmp_path / "b.csv", index=False)
    batch_score(spec, tmp_path / "a.csv", tmp_path / "parts-out")
    with pytest.raises(InputError, match="holds parts of another job"):
        batch_score(spec, tmp_path / "b.csv", tmp_path / "parts-out")


def test_csv_id_columns_become_integers_in_one_parquet_output_only_when_lossless(
    packaged: Packaged, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = table(packaged, 250)
    frame.insert(0, "row_id", range(-5, 245))
    frame.insert(1, "code", [f"{i:03d}" for i in range(250)])  # leading zeros: "007" stays
    frame.insert(2, "maybe", [str(i) if i != 200 else "" for i in range(250)])  # one missing
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "out.parquet"
    result = batch_score(read_spec(packaged.v2), source, out, "local", 2, chunk_rows=60)
    assert result.scored == 250 and result.rejected == 0
    schema = pq.read_schema(out)
    assert schema.field("row_id").type == pa.int64()
    assert schema.field("code").type == pa.string() and schema.field("maybe").type == pa.string()
    assert schema.field("customer").type == pa.string()
    written = pq.read_table(out).to_pandas()
    assert written["row_id"].tolist() == list(range(-5, 245))
    assert written["code"].tolist()[:8] == ["000", "001", "002", "003", "004", "005", "006", "007"]
    # a Parquet input keeps the types it has, text included
    parquet_in = tmp_path / "in.parquet"
    frame.astype({"row_id": str}).to_parquet(parquet_in)
    again = tmp_path / "again.parquet"
    batch_score(read_spec(packaged.v2), parquet_in, again, "local", 1, chunk_rows=60)
    assert pq.read_schema(again).field("row_id").type in (pa.string(), pa.large_string())


def test_a_forked_workers_input_error_is_the_commands_one_line_error(
    packaged: Packaged, tmp_path: Path
) -> None:
    # every chunk but the first (read by the parent to find the columns) holds bytes that are
    # not UTF-8: a forked worker meets them, and the command says so as one worker does
    good = table(packaged, 1000).to_csv(index=False).encode()
    bad = b"".join(line[:-1] + b"\xff\n" for line in good.splitlines(keepends=True)[1:])
    (tmp_path / "rows.csv").write_bytes(good + bad * 8)
    command = [sys.executable, "-m", "mlops_ci", "batch-score", "--model-dir", str(packaged.v2)]
    command += ["--input", str(tmp_path / "rows.csv"), "--output", str(tmp_path / "out")]
    for workers in ("1", "2"):
        args = [*command, "--chunk-rows", "1000", "--processes", workers]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "rows.csv: cannot be read as CSV" in error[0], done.stderr
        assert "internal error" not in done.stderr


def test_the_command_ends_without_teardown_once_every_row_is_written(
    packaged: Packaged, tmp_path: Path
) -> None:
    """A local batch-score ends its process with os._exit after its output (cli.common's
    exit_without_teardown): what it printed to a pipe is all there, every row is written."""
    import pyarrow.parquet as pq

    table(packaged, 3000).to_csv(tmp_path / "rows.csv", index=False)
    out = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "mlops_ci", "batch-score", "--model-dir", str(packaged.v2)]
    command += ["--input", str(tmp_path / "rows.csv"), "--output", str(out)]
    done = subprocess.run(
        [*command, "--chunk-rows", "700", "--processes", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3,000 rows: 3,000 scored, 0 rejected" in done.stdout
    assert done.stdout.rstrip().endswith(f"output: {out}")
    assert pq.read_table(out).num_rows == 3000
    assert not list(tmp_path.glob("out.parquet.parts*")), "the parts are merged and removed"
