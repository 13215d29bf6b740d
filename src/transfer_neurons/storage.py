"""Float16 arrays with a float32 scale per (layer, row), written batch by batch.

Residual streams of some models (Gemma 3's reach ~1e5) overflow float16, so every
[layer, row] vector is stored as ``values / scale`` with ``scale`` its max-abs value.
Arrays are laid out [layer, row, feature] so that one layer reads contiguously.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ScaledArrayWriter:
    """Pre-allocated on-disk array filled in row slices; memory stays one batch."""

    def __init__(self, directory: Path, name: str, n_layers: int, n_rows: int, n_features: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.values = np.lib.format.open_memmap(
            directory / f"{name}.npy", mode="w+", dtype=np.float16, shape=(n_layers, n_rows, n_features)
        )
        self.scales = np.lib.format.open_memmap(
            directory / f"{name}.scale.npy", mode="w+", dtype=np.float32, shape=(n_layers, n_rows)
        )

    def write(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` [layer, batch, feature] (float32) at rows ``start:start+batch``."""
        scale = np.abs(block).max(axis=-1)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        stop = start + block.shape[1]
        self.values[:, start:stop] = (block / scale[..., None]).astype(np.float16)
        self.scales[:, start:stop] = scale

    def close(self) -> None:
        self.values.flush()
        self.scales.flush()
        del self.values, self.scales


def read_scaled(directory: Path, name: str, layer: int | None = None) -> np.ndarray:
    """Float32 array [row, feature] of one layer, or [layer, row, feature] of all."""
    values = np.load(directory / f"{name}.npy", mmap_mode="r")
    scales = np.load(directory / f"{name}.scale.npy", mmap_mode="r")
    if layer is None:
        return values.astype(np.float32) * scales[..., None]
    return values[layer].astype(np.float32) * scales[layer][:, None]


class PlainArrayWriter:
    """Pre-allocated float32 on-disk array [layer, row] for per-token scalars."""

    def __init__(self, directory: Path, name: str, n_layers: int, n_rows: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.values = np.lib.format.open_memmap(
            directory / f"{name}.npy", mode="w+", dtype=np.float32, shape=(n_layers, n_rows)
        )

    def write(self, start: int, block: np.ndarray) -> None:
        self.values[:, start : start + block.shape[1]] = block

    def close(self) -> None:
        self.values.flush()
        del self.values
