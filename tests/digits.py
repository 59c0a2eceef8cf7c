"""MNIST-shaped synthetic digits written as the four IDX files, for CLI runs
that must neither download nor need the real MNIST: ten noisy class
templates, so a network learns them in an epoch."""

import numpy as np


def write_digits(folder, n_train, n_test=200, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 784))
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = np.clip(templates[labels] + rng.normal(0, 90, (n, 784)), 0, 255).astype(np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            b"".join(v.to_bytes(4, "big") for v in (0x803, n, 28, 28)) + images.tobytes())
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(
            b"".join(v.to_bytes(4, "big") for v in (0x801, n)) + labels.tobytes())
    return folder
