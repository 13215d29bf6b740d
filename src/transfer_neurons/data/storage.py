"""Float16 arrays with a float32 scale per (layer, row), written batch by batch.

Residual streams of some models (Gemma 3's reach ~1e5) overflow float16, so every
[layer, row] vector is stored as ``values / scale`` with ``scale`` its max-abs value.
Arrays are laid out [layer, row, feature] so that one layer reads contiguously.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt


class _BlockFile:
    """A pre-allocated .npy file [layer, row, feature] filled by plain writes at row offsets.

    Plain writes rather than a writable memmap: written pages then belong to the page cache,
    not to the process, so resident memory stays one batch whatever the number of rows.
    """

    def __init__(self, path: Path, dtype: npt.DTypeLike, shape: tuple[int, ...]) -> None:
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        self.offset, self.dtype, self.shape = header.offset, np.dtype(dtype), shape
        del header  # only created the header and a sparse file of the final size
        self.stream = open(path, "r+b")  # closed in close()

    def write_rows(self, rows: Sequence[int], block: np.ndarray) -> None:
        """Write ``block`` [layer, batch, ...] at rows ``rows`` (one per batch entry) of every layer.

        Runs of consecutive rows are written in one call.
        """
        n_rows = self.shape[1]
        row_bytes = int(np.prod(self.shape[2:], dtype=np.int64)) * self.dtype.itemsize
        block = np.ascontiguousarray(block, dtype=self.dtype)
        for first, count, source in _consecutive_runs(rows):
            for layer in range(block.shape[0]):
                self.stream.seek(self.offset + (layer * n_rows + first) * row_bytes)
                self.stream.write(block[layer, source : source + count].tobytes())

    def close(self) -> None:
        self.stream.close()


def _consecutive_runs(rows: Sequence[int]) -> list[tuple[int, int, int]]:
    """(first row, length, position in ``rows``) of each run of consecutive row numbers."""
    runs: list[tuple[int, int, int]] = []
    for position, row in enumerate(rows):
        if runs and runs[-1][0] + runs[-1][1] == row:
            first, count, source = runs[-1]
            runs[-1] = (first, count + 1, source)
        else:
            runs.append((int(row), 1, position))
    return runs


class ScaledArrayWriter:
    """Float16 values and float32 scales, written batch by batch; memory stays one batch."""

    def __init__(self, directory: Path, name: str, n_layers: int, n_rows: int, n_features: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.values = _BlockFile(directory / f"{name}.npy", np.float16, (n_layers, n_rows, n_features))
        self.scales = _BlockFile(directory / f"{name}.scale.npy", np.float32, (n_layers, n_rows))

    def write(self, rows: Sequence[int], block: np.ndarray) -> None:
        """Write ``block`` [layer, batch, feature] (float32) at rows ``rows``."""
        scale = np.abs(block).max(axis=-1)
        scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
        self.values.write_rows(rows, block / scale[..., None])
        self.scales.write_rows(rows, scale)

    def close(self) -> None:
        self.values.close()
        self.scales.close()


def read_scaled(directory: Path, name: str, layer: int | None = None) -> np.ndarray:
    """Float32 array [row, feature] of one layer, or [layer, row, feature] of all."""
    values = np.load(directory / f"{name}.npy", mmap_mode="r")
    scales = np.load(directory / f"{name}.scale.npy", mmap_mode="r")
    if layer is None:
        return values.astype(np.float32) * scales[..., None]
    return values[layer].astype(np.float32) * scales[layer][:, None]


def copy_rows(source: Path, directory: Path, name: str, rows: np.ndarray, *, scaled: bool) -> None:
    """Rows ``rows`` (in that order) of the array ``name`` stored in ``source`` [layer, row, ...], written
    to ``directory``: the float16 values and float32 scales when ``scaled``, else the plain values;
    copied as stored, not re-quantised."""
    for file_name in (f"{name}.npy", f"{name}.scale.npy") if scaled else (f"{name}.npy",):
        stored = np.load(source / file_name, mmap_mode="r")
        np.save(directory / file_name, np.ascontiguousarray(stored[:, rows]))


class PlainArrayWriter:
    """Float32 on-disk array [layer, row] for per-token scalars, written batch by batch."""

    def __init__(self, directory: Path, name: str, n_layers: int, n_rows: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.values = _BlockFile(directory / f"{name}.npy", np.float32, (n_layers, n_rows))

    def write(self, rows: Sequence[int], block: np.ndarray) -> None:
        self.values.write_rows(rows, block)

    def close(self) -> None:
        self.values.close()
