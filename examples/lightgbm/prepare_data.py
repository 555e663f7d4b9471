"""Write data/train.csv and data/test.csv from scikit-learn's bundled diabetes data, unscaled.

The target (disease progression after a year) runs from 25 to 346, so ONNX parity is checked
on values of magnitude 10^2, where float32 rounding alone is about 1e-5 absolute. The CSVs are
committed; rerun this only to regenerate them (the split is seeded).
"""

from pathlib import Path

from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split


def main() -> None:
    frame = load_diabetes(as_frame=True, scaled=False).frame
    train, test = train_test_split(frame, test_size=0.3, random_state=42)
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    train.to_csv(out / "train.csv", index=False)
    test.to_csv(out / "test.csv", index=False)


if __name__ == "__main__":
    main()
