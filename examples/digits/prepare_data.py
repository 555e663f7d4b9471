"""Write data/train.npz and data/test.npz from scikit-learn's bundled digits (no download).

Each archive (``np.savez``, uncompressed) holds the model's input ``pixels`` (float32
[rows, 1, 8, 8], the 0..16 grey levels divided by 16), the target ``label`` (int64, the digit)
and ``ink``, metadata to slice the evaluation by: the image's mean pixel binned as "light",
"medium" or "heavy" (fixed bounds near the terciles). The split is stratified (80/20) and
seeded, and ``np.savez`` stamps no time, so a rerun writes the committed files byte for byte.
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

INK_BOUNDS = [0.29, 0.32]  # mean pixel: below the first "light", from the second on "heavy"
INK_NAMES = np.array(["light", "medium", "heavy"], dtype="<U6")


def main() -> None:
    digits = load_digits()
    pixels = (digits.images / 16.0).astype(np.float32)[:, np.newaxis, :, :]
    label = digits.target.astype(np.int64)
    ink = INK_NAMES[np.digitize(pixels.mean(axis=(1, 2, 3)), INK_BOUNDS)]
    parts = train_test_split(pixels, label, ink, test_size=0.2, random_state=42, stratify=label)
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    for name, (x, y, i) in {"train": parts[0::2], "test": parts[1::2]}.items():
        np.savez(out / f"{name}.npz", pixels=x, label=y, ink=i)


if __name__ == "__main__":
    main()
