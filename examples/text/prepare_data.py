"""Write data/train.npz (600 rows) and data/test.npz (200 rows): generated token sequences, as a
tokenizer would give them (no download).

A vocabulary of 64 ids, 0 the padding: ids 1 to 20 are common words (any class), each class
("sports", "finance", "weather") has four keyword ids of its own (21 to 32), and ids 33 to 63
are words this sample happens not to hold (the model takes them all). A row has 4 to 12 real
tokens: one to three keywords of its class among common ids, in random order, then padding up
to 12.

Each archive (``np.savez``, uncompressed) holds the model's inputs ``input_ids`` and
``attention_mask`` (int64 [rows, 12]; the mask 1 on real tokens and 0 on padding, as Hugging
Face tokenizers give it), the target ``label`` (the class name) and ``length``, metadata to
slice the evaluation by: "short" (4 to 7 real tokens) or "long" (8 to 12). The generator is
seeded and ``np.savez`` stamps no time, so a rerun writes the committed files byte for byte.
"""

from pathlib import Path

import numpy as np

VOCAB, LENGTH, PADDING = 64, 12, 0
CLASSES = np.array(["sports", "finance", "weather"], dtype="<U7")
COMMON = np.arange(1, 21)
KEYWORDS = {name: np.arange(21 + 4 * i, 25 + 4 * i) for i, name in enumerate(CLASSES)}
SHORT_MAX = 7  # real tokens: up to this many "short", more "long"
ROWS = {"train": 600, "test": 200}


def generate(rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    input_ids = np.full((rows, LENGTH), PADDING, dtype=np.int64)
    label = rng.permutation(np.resize(CLASSES, rows))  # the classes in equal shares
    real = rng.integers(4, LENGTH + 1, size=rows)
    for row, (name, count) in enumerate(zip(label, real, strict=True)):
        keywords = rng.choice(KEYWORDS[name], size=rng.integers(1, 4))
        common = rng.choice(COMMON, size=count - len(keywords))
        input_ids[row, :count] = rng.permutation(np.concatenate([keywords, common]))
    attention_mask = (np.arange(LENGTH) < real[:, None]).astype(np.int64)
    length = np.where(real <= SHORT_MAX, "short", "long").astype("<U5")
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "label": label,
        "length": length,
    }


def main() -> None:
    rng = np.random.default_rng(43)
    out = Path(__file__).parent / "data"
    out.mkdir(exist_ok=True)
    for name, rows in ROWS.items():
        np.savez(out / f"{name}.npz", **generate(rows, rng))


if __name__ == "__main__":
    main()
