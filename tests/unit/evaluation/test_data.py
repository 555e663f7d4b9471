"""The evaluation data: a bad value named with its row."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import load_config
from tests.support.configs import VALID, write


def test_a_stray_word_in_a_number_column_names_its_row(project: Path) -> None:
    from mlops_ci.errors import InputError
    from mlops_ci.evaluation.data import load_evaluation

    data = project / "data" / "test.csv"
    lines = data.read_text().splitlines()
    fields = lines[9].split(",")
    fields[2] = "n/a"
    lines[9] = ",".join(fields)
    data.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"data/test.csv:10: column 'petal_length': 'n/a' is not"):
        load_evaluation(load_config(project))


def _with_columns(project: Path, dtypes: str, values: dict[str, list[str]]) -> None:
    """evaluate.data with more columns (one value a row, cycled), and evaluate.dtypes."""
    data = project / "data" / "test.csv"
    lines = data.read_text().splitlines()
    for i, line in enumerate(lines):
        cells = list(values) if i == 0 else [v[(i - 1) % len(v)] for v in values.values()]
        lines[i] = ",".join([line, *cells])
    data.write_text("\n".join(lines) + "\n")
    config = project / "mlops.yaml"
    config.write_text(
        config.read_text().replace("  target: species\n", f"  target: species\n{dtypes}")
    )


@pytest.mark.timeout(60)
def test_bool_and_category_columns_get_their_kinds_and_a_bad_value_names_its_row(
    project: Path,
) -> None:
    from mlops_ci.errors import InputError
    from mlops_ci.evaluation.data import load_evaluation

    columns = {
        "flag": ["True", "False"],  # as pandas writes a bool
        "gappy": ["True", "", "false"],  # read_csv leaves a bool with gaps as objects
        "size": ["3", "1", "2"],
        "ok": ["1", "0"],
    }
    _with_columns(project, "  dtypes: {size: category, ok: bool}\n", columns)
    features = load_evaluation(load_config(project)).features
    kinds = {c: str(features[c].dtype) for c in columns}
    assert kinds == {"flag": "bool", "gappy": "boolean", "size": "category", "ok": "bool"}
    assert features["size"].cat.categories.tolist() == [1, 2, 3]  # numbers stay numbers
    assert features["gappy"].isna().tolist()[:3] == [False, True, False]

    data = project / "data" / "test.csv"
    data.write_text(data.read_text().replace(",1\n", ",yes\n", 1))
    with pytest.raises(
        InputError, match=r"data/test.csv:2: column 'ok': 'yes' is not true or false"
    ):
        load_evaluation(load_config(project))


@pytest.mark.timeout(60)
def test_validate_names_a_dtypes_column_evaluate_data_lacks(project: Path) -> None:
    from mlops_ci.evaluation.data import check_columns

    _with_columns(project, "  dtypes: {colour: category}\n", {})
    problems = check_columns(load_config(project))
    assert any("evaluate.dtypes: colour not columns of data/test.csv" in p for p in problems)


def _tensor_project(tmp_path: Path, evaluate: str = "", **arrays: object) -> Path:
    import numpy as np

    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "test.npz", **arrays)  # type: ignore[arg-type]
    text = VALID.replace("data/test.csv", "data/test.npz") + evaluate
    return write(tmp_path, text)


def _text_rows(rows: int = 6) -> dict[str, object]:
    import numpy as np

    return {
        "input_ids": np.arange(rows * 4, dtype=np.int64).reshape(rows, 4),
        "attention_mask": np.ones((rows, 4), dtype=np.int64),
        "label": np.array(["a", "b"] * (rows // 2)),
        "length": np.array(["short", "long"] * (rows // 2)),
    }


@pytest.mark.timeout(60)
def test_a_tensor_models_data_is_its_arrays_mapped_with_target_and_slices(tmp_path: Path) -> None:
    import numpy as np

    from mlops_ci.evaluation.data import check_columns, load_evaluation
    from mlops_ci.model.tensors import Tensors

    rows = _text_rows()
    config = load_config(_tensor_project(tmp_path, "  slices: [length]\n", **rows))
    assert check_columns(config) == []
    data = load_evaluation(config)
    assert isinstance(data.features, Tensors) and data.rows == 6
    # every array but the target is offered; the model takes its inputs by name
    assert data.features.columns == ["input_ids", "attention_mask", "length"]
    assert isinstance(data.features.arrays["input_ids"], np.memmap)
    assert np.array_equal(data.features.arrays["input_ids"], rows["input_ids"])
    assert data.target.tolist() == ["a", "b"] * 3
    assert data.slices["length"].tolist() == ["short", "long"] * 3
    assert len(data.sha256) == 64
    assert load_evaluation(config, nrows=2).rows == 2


@pytest.mark.timeout(60)
def test_a_tensor_data_file_that_does_not_fit_names_the_array(tmp_path: Path) -> None:
    import numpy as np

    from mlops_ci.errors import InputError
    from mlops_ci.evaluation.data import check_columns, load_evaluation

    rows = _text_rows()
    config = load_config(_tensor_project(tmp_path, "  slices: [lenght]\n", **rows))
    assert check_columns(config) == [
        "mlops.yaml:8: evaluate.slices: lenght not arrays of data/test.npz"
    ]
    with pytest.raises(InputError, match=r"evaluate.slices: 'lenght' not array\(s\) of"):
        load_evaluation(config)
    (tmp_path / "data").rename(tmp_path / "old")
    odd = dict(rows, attention_mask=np.ones((5, 4)))
    config = load_config(_tensor_project(tmp_path, **odd))
    with pytest.raises(InputError, match=r"test.npz: array 'attention_mask' has other rows"):
        load_evaluation(config)
    (tmp_path / "data").rename(tmp_path / "old2")
    config = load_config(_tensor_project(tmp_path, **dict(rows, label=np.zeros((6, 2)))))
    with pytest.raises(InputError, match=r"the target 'label' is \[6, 2\]; it must hold one"):
        load_evaluation(config)
    (tmp_path / "data").rename(tmp_path / "old3")
    config = load_config(_tensor_project(tmp_path, **{"labels": rows["label"]}))
    assert "did you mean 'labels'?" in check_columns(config)[0]
    with pytest.raises(InputError, match=r"evaluate.target: 'label' is not an array of"):
        load_evaluation(config)
