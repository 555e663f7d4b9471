"""Write data/train.csv and data/test.csv from scikit-learn's bundled breast-cancer data.

Ten numeric columns, one text column (``size_bin``, the tumour's area as small/mid/large) and
the target ``malignant`` as 0/1, the class indices XGBoost predicts. The CSVs are committed;
rerun this only to regenerate them (the split is seeded).
"""

from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split


def main() -> None:
    data = load_breast_cancer(as_frame=True)
    frame = data.data.iloc[:, :10].copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame = frame.round(5)
    frame["size_bin"] = pd.cut(
        frame["mean_area"], [0, 500, 1000, float("inf")], labels=["small", "mid", "large"]
    ).astype(str)
    frame["malignant"] = 1 - data.target  # scikit-learn's 1 is benign
    train, test = train_test_split(
        frame, test_size=0.3, random_state=42, stratify=frame["malignant"]
    )
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)


if __name__ == "__main__":
    main()
