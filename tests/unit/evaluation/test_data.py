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
