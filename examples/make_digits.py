#!/usr/bin/env python3
"""Export scikit-learn's bundled handwritten digits to CSV (offline: the data ships with sklearn).

    python examples/make_digits.py           # writes examples/data/digits/{train,valid,test}.csv

1797 8x8 images, 64 pixel intensities 0-16 each (columns pixel_0_0 ... pixel_7_7,
row by row) and a `label` column 0-9: the classifier spec's local data. Split 70/15/15
with one fixed permutation, stratified by label so every split has every digit in
proportion. Values are written as the integers they are (no scaling: the model sees
exactly what the serving stage will send).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 0
FRACTIONS = {"train": 0.70, "valid": 0.15, "test": 0.15}


def split_indices(labels: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts = {name: [] for name in FRACTIONS}
    for label in np.unique(labels):
        idx = rng.permutation(np.nonzero(labels == label)[0])
        n_train = int(round(len(idx) * FRACTIONS["train"]))
        n_valid = int(round(len(idx) * FRACTIONS["valid"]))
        parts["train"].append(idx[:n_train])
        parts["valid"].append(idx[n_train:n_train + n_valid])
        parts["test"].append(idx[n_train + n_valid:])
    # Shuffle within each split so that files are not sorted by label.
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}


def main() -> None:
    from sklearn.datasets import load_digits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "digits")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    digits = load_digits()
    features = digits.data.astype(np.int64)
    labels = digits.target.astype(np.int64)
    header = [f"pixel_{r}_{c}" for r in range(8) for c in range(8)] + ["label"]
    args.out.mkdir(parents=True, exist_ok=True)
    counts = []
    for name, idx in split_indices(labels, args.seed).items():
        with open(args.out / f"{name}.csv", "w", encoding="utf-8", newline="\n") as f:
            f.write(",".join(header) + "\n")
            for i in idx:
                f.write(",".join(str(v) for v in features[i]) + f",{labels[i]}\n")
        counts.append(f"{name} {len(idx)}")
    print(", ".join(counts), "->", args.out)


if __name__ == "__main__":
    main()
