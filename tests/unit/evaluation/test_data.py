"""The evaluation data: a bad value named with its row."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ci.config.types import load_config


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
