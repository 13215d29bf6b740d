"""Activation dumps: last-token states of every layer for a list of sentences.

A dump directory holds, for N sentences and L layers (see ``storage`` for the format):

* ``layer_output``        [L, N, d_model]  raw residual stream after each layer
* ``residual_pre_mlp``    [L, N, d_model]  residual stream before the MLP adds
* ``neuron_activations``  [L, N, d_mlp]    input of the down projection
* ``write_scale.npy``     [L, N]           per-token factor on neuron writes (1 if none)
* ``meta.json``           counts (sentences, truncated) and the model facts
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.corpus import sentences
from transfer_neurons.data.storage import PlainArrayWriter, ScaledArrayWriter, read_scaled
from transfer_neurons.model.adapters import effective_activations
from transfer_neurons.model.batching import batches, decoder_forward, tokenize
from transfer_neurons.model.hooks import CapturedStates, capture_states
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import SIDES

log = logging.getLogger(__name__)

STATE_ARRAYS = ("layer_output", "residual_pre_mlp", "neuron_activations")


def last_token_states(loaded: LoadedModel, sentences: Sequence[str], max_tokens: int):
    """One batched forward pass; returns ``(CapturedStates, n_truncated)`` at the last real token."""
    batch = tokenize(loaded.tokenizer, sentences, max_tokens).to(loaded.device)
    with torch.no_grad(), capture_states(loaded.adapter) as captured:
        decoder_forward(loaded.model, batch)
    return captured["states"], batch.n_truncated


def _as_numpy(states: CapturedStates, name: str) -> np.ndarray:
    return getattr(states, name).cpu().numpy()


def dump_activations(
    loaded: LoadedModel,
    sentences: Sequence[str],
    directory: Path,
    *,
    batch_size: int = 32,
    max_tokens: int = 64,
    description: str = "dump",
) -> dict:
    """Write a dump of ``sentences`` to ``directory`` and return its metadata."""
    facts = loaded.facts
    n_rows = len(sentences)
    widths = {"layer_output": facts.d_model, "residual_pre_mlp": facts.d_model, "neuron_activations": facts.d_mlp}
    writers = {name: ScaledArrayWriter(directory, name, facts.n_layers, n_rows, widths[name]) for name in STATE_ARRAYS}
    scale_writer = PlainArrayWriter(directory, "write_scale", facts.n_layers, n_rows)
    n_truncated = 0
    with tqdm(total=n_rows, desc=description, unit="sentence") as progress:
        for start, chunk in batches(list(sentences), batch_size):
            states, truncated = last_token_states(loaded, chunk, max_tokens)
            n_truncated += truncated
            for name, writer in writers.items():
                writer.write(start, _as_numpy(states, name))
            scale_writer.write(start, states.write_scale.cpu().numpy())
            progress.update(len(chunk))
    for writer in [*writers.values(), scale_writer]:
        writer.close()
    meta = {"n_sentences": n_rows, "n_truncated": n_truncated, "max_tokens": max_tokens, "facts": facts.__dict__}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


class Dump:
    """Read access to one dump directory, one layer at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory} is not a complete activation dump (no meta.json)")
        self.meta = json.loads(meta_path.read_text())

    @property
    def n_layers(self) -> int:
        return self.meta["facts"]["n_layers"]

    def layer(self, name: str, layer: int) -> np.ndarray:
        """[N, feature] float32."""
        return read_scaled(self.directory, name, layer)

    def write_scale(self, layer: int) -> np.ndarray:
        return np.load(self.directory / "write_scale.npy", mmap_mode="r")[layer].astype(np.float32)

    def effective_activations(self, layer: int) -> np.ndarray:
        """Activations times the write scale: the coefficients of the write vectors. [N, d_mlp]."""
        return effective_activations(self.layer("neuron_activations", layer), self.write_scale(layer))

    def all_layers(self, name: str) -> np.ndarray:
        """[L, N, feature] float32."""
        return read_scaled(self.directory, name)


def dump_split(
    manifest: Path, corpus: Path, split: str, directory: Path, *, batch_size: int, max_tokens: int, device: str
) -> None:
    """Dump the English (``pivot``) and L2 (``target``) sentences of one split."""
    loaded = load_model(manifest, device)
    pairs = pl.read_parquet(corpus)
    for side in SIDES:
        texts = sentences(pairs, split, side)
        meta = dump_activations(
            loaded,
            texts,
            Path(directory) / side,
            batch_size=batch_size,
            max_tokens=max_tokens,
            description=f"{split}/{side}",
        )
        log.info(
            "%s/%s: %d sentences, %d truncated to %d tokens",
            split,
            side,
            meta["n_sentences"],
            meta["n_truncated"],
            max_tokens,
        )
