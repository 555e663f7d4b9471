"""Write data/train.csv and data/test.csv from scikit-learn's bundled iris data (no download).

The CSVs are committed; rerun this only to regenerate them (the split is seeded).
"""

from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def main() -> None:
    iris = load_iris(as_frame=True)
    frame = iris.frame.copy()
    frame.columns = [*FEATURES, "species"]
    frame["species"] = iris.target_names[iris.target]
    train, test = train_test_split(frame, test_size=0.4, random_state=42, stratify=frame["species"])
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)


if __name__ == "__main__":
    main()
