"""Activation dumps: last-token states of every layer for a list of sentences.

A dump directory holds, for N sentences and L layers (see ``storage`` for the format):

* ``layer_output``        [L, N, d_model]  raw residual stream after each layer
* ``residual_pre_mlp``    [L, N, d_model]  residual stream before the MLP adds
* ``neuron_activations``  [L, N, d_mlp]    input of the down projection
* ``final_normed``        [1, N, d_model]  the final norm of the last layer's output: the last layer's
                                           state as the paper reads it (HF's ``hidden_states[-1]``)
* ``embedding``           [1, N, d_model]  the first layer's input (HF's ``hidden_states[0]``)
* ``write_scale.npy``     [L, N]           per-token factor on neuron writes (1 if none)
* ``active_counts.npy``   [L, d_mlp]       over every token of the text (not only the last): on how
                                           many each neuron's activation function is > 0 (LAPE)
* ``meta.json``           the number of sentences and of counted tokens, the model facts and the
                          precision the model ran in (``dtype``)

Rows follow the split's kept pairs, in corpus order; ``{split}.pairs.parquet`` beside the split's
directory lists every pair of the split with its token counts and whether it was kept.
``InMemoryDump`` offers the same reads for states that never went to disk.

The English sentences of a parallel corpus are the same for every language, so the workflow runs
the model on them once per split (``dump_pivot_split``: the distinct English sentences of every
language's kept pairs, in a dump of their own) and each language's ``pivot`` side copies its rows
from there (``gather_dump``: the stored values, bit for bit). A copied side has no
``active_counts``; English's LAPE counts are the pivot dump's.

``layer_output`` stays raw in every layer: scoring and the correlation detector read the raw
residual stream, as the authors' scoring does. ``layer_states(last_layer)`` gives the layer states
as an analysis reads them under ``runtime.last_layer``: ``normed`` (the paper's ``hidden_states[1:]``,
the last layer final-normed) or ``raw``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.corpus import sentences
from transfer_neurons.data.storage import PlainArrayWriter, ScaledArrayWriter, copy_rows, read_scaled
from transfer_neurons.model.adapters import effective_activations
from transfer_neurons.model.batching import (
    Stacked,
    TokenizedBatch,
    decoder_forward,
    length_sorted_batches,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import CapturedStates, HookSession
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import PIVOT_SIDE, SIDES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

ACTIVE_COUNTS = "active_counts.npy"  # [L, d_mlp] int64: tokens on which each neuron is active
META = "meta.json"  # written last: a dump without it is incomplete
STATE_ARRAYS = ("layer_output", "residual_pre_mlp", "neuron_activations")
# One-layer arrays [1, N, d_model] beside them: the normed last layer and the embedding output.
EXTRA_STATES = ("final_normed", "embedding")
# runtime.last_layer: the paper's final-normed last layer, or the raw residual stream there.
LAST_LAYER_MODES = ("normed", "raw")


def check_last_layer(last_layer: str) -> str:
    if last_layer not in LAST_LAYER_MODES:
        raise ValueError(f"runtime.last_layer must be one of {', '.join(LAST_LAYER_MODES)}, got {last_layer!r}")
    return last_layer


def with_last_layer(layer_output: Stacked, final_normed: Stacked | None, last_layer: str) -> Stacked:
    """Layer states as an analysis reads them under ``runtime.last_layer``.

    ``layer_output`` [L, N, d] raw outputs of layers 0..L-1 (numpy or torch; its last layer must be the
    model's last), ``final_normed`` [N, d] the final norm's output (``None`` is fine for ``raw``) ->
    [L, N, d]: unchanged for ``raw``; for ``normed`` the last layer is ``final_normed``, as in the
    paper's ``hidden_states[1:]``. A new array: the input is left as it is.
    """
    if check_last_layer(last_layer) == "raw":
        return layer_output
    if final_normed is None:
        raise ValueError("runtime.last_layer: normed needs the final-normed states, and none were captured")
    if isinstance(layer_output, torch.Tensor):
        return torch.cat([layer_output[:-1], final_normed[None].to(layer_output.dtype)])
    return np.concatenate([layer_output[:-1], np.asarray(final_normed, dtype=layer_output.dtype)[None]])


def last_token_states(loaded: LoadedModel, sentences: Sequence[str]) -> CapturedStates:
    """One batched forward pass over whole sentences; the states at each one's last real token,
    with the final-normed last state and the embedding output."""
    batch = tokenize(loaded.tokenizer, sentences).to(loaded.device)
    with torch.no_grad(), HookSession(loaded.adapter) as session:
        capture = session.capture(final_norm=True, embedding=True)
        decoder_forward(loaded.model, batch)
    return capture.states


def language_tokens(tokenizer: PreTrainedTokenizerBase, batch: TokenizedBatch) -> torch.Tensor:
    """[batch, pos] bool: the real tokens of the text, neither padding nor special tokens (BOS...)."""
    special = torch.tensor(sorted(tokenizer.all_special_ids), dtype=batch.input_ids.dtype)
    return batch.attention_mask.bool() & ~torch.isin(batch.input_ids, special.to(batch.input_ids.device))


def states_and_activity(loaded: LoadedModel, sentences: Sequence[str]) -> tuple[CapturedStates, np.ndarray, int]:
    """Last-token states, and per neuron how many of the sentences' tokens activate it [L, d_mlp].

    Returns ``(states, active_counts, n_counted_tokens)``; the counts are LAPE's raw material.
    """
    batch = tokenize(loaded.tokenizer, sentences).to(loaded.device)
    counted = language_tokens(loaded.tokenizer, batch)
    with torch.no_grad(), HookSession(loaded.adapter) as session:
        capture = session.capture(final_norm=True, embedding=True)
        counts = session.count_active(counted)
        decoder_forward(loaded.model, batch)
    active = np.stack([counts[layer].numpy() for layer in range(loaded.facts.n_layers)])
    return capture.states, active, int(counted.sum())


def batched_last_token_states(
    loaded: LoadedModel, sentences: Sequence[str], *, batch_size: int, max_batch_tokens: int | None
) -> Iterator[tuple[list[int], CapturedStates]]:
    """``(row indices, states)`` of length-sorted batches that together cover every sentence."""
    lengths = token_lengths(loaded.tokenizer, sentences)
    for rows in length_sorted_batches(lengths, batch_size, max_batch_tokens):
        yield rows, last_token_states(loaded, [sentences[row] for row in rows])


def dump_activations(
    loaded: LoadedModel,
    sentences: Sequence[str],
    directory: Path,
    *,
    batch_size: int = 32,
    max_batch_tokens: int | None = None,
    description: str = "dump",
) -> dict:
    """Write a dump of ``sentences`` (rows in their order) to ``directory`` and return its metadata."""
    facts = loaded.facts
    n_rows = len(sentences)
    widths = {"layer_output": facts.d_model, "residual_pre_mlp": facts.d_model, "neuron_activations": facts.d_mlp}
    writers = {name: ScaledArrayWriter(directory, name, facts.n_layers, n_rows, widths[name]) for name in STATE_ARRAYS}
    writers.update({name: ScaledArrayWriter(directory, name, 1, n_rows, facts.d_model) for name in EXTRA_STATES})
    scale_writer = PlainArrayWriter(directory, "write_scale", facts.n_layers, n_rows)
    active_counts = np.zeros((facts.n_layers, facts.d_mlp), dtype=np.int64)
    counted_tokens = 0
    lengths = token_lengths(loaded.tokenizer, sentences)
    with tqdm(total=n_rows, desc=description, unit="sentence") as progress:
        for rows in length_sorted_batches(lengths, batch_size, max_batch_tokens):
            states, active, n_tokens = states_and_activity(loaded, [sentences[row] for row in rows])
            for name, writer in writers.items():
                block = getattr(states, name).cpu().numpy()
                writer.write(rows, block[None] if name in EXTRA_STATES else block)
            scale_writer.write(rows, states.write_scale.cpu().numpy())
            active_counts += active
            counted_tokens += n_tokens
            progress.update(len(rows))
    for writer in writers.values():
        writer.close()
    scale_writer.close()
    np.save(directory / ACTIVE_COUNTS, active_counts)
    meta = {"n_sentences": n_rows, "counted_tokens": counted_tokens, "facts": facts.__dict__,
            "dtype": loaded.dtype_name}  # fmt: skip
    write_meta(directory, meta)
    return meta


def write_meta(directory: Path, meta: dict) -> None:
    """A dump's ``meta.json``, the file that marks it complete."""
    (directory / META).write_text(json.dumps(meta, indent=2))


class Dump:
    """Read access to one dump directory, one layer at a time."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / META
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

    def extra_state(self, name: str) -> np.ndarray:
        """``final_normed`` or ``embedding``: [N, d_model] float32."""
        if not (self.directory / f"{name}.npy").is_file():
            raise FileNotFoundError(
                f"{self.directory} has no {name} array: it was dumped before the dumps held it. Rerun "
                "dump_activations (e.g. snakemake --forcerun dump_activations), or set runtime.last_layer: raw "
                "and evaluation.language_space.embedding: false"
            )
        return read_scaled(self.directory, name, 0)

    def layer_states(self, last_layer: str) -> np.ndarray:
        """[L, N, d_model] layer states as an analysis reads them (``with_last_layer``): raw outputs of
        every layer, the last one final-normed when ``last_layer`` is ``normed`` (the paper's reading)."""
        normed = self.extra_state("final_normed") if check_last_layer(last_layer) == "normed" else None
        return with_last_layer(self.all_layers("layer_output"), normed, last_layer)

    def layer_state(self, layer: int, last_layer: str) -> np.ndarray:
        """[N, d_model] one layer of ``layer_states`` (reads that layer only)."""
        if layer == self.n_layers - 1 and check_last_layer(last_layer) == "normed":
            return self.extra_state("final_normed")
        return self.layer("layer_output", layer)

    def active_counts(self) -> tuple[np.ndarray, int]:
        """([L, d_mlp] tokens on which each neuron was active, the number of tokens counted)."""
        if "gathered_from" in self.meta:
            raise ValueError(
                f"{self.directory} holds rows copied from the dump {self.meta['gathered_from']} and no activation "
                "counts of its own; read that dump's"
            )
        return np.load(self.directory / ACTIVE_COUNTS), int(self.meta["counted_tokens"])


# Detection reads each sentence's last token; a cut sentence would be read mid-sentence, so it is
# dropped instead, and a split may lose at most this share of its pairs that way.
MAX_DROPPED_SHARE = 0.05


def pairs_for_detection(
    pairs: pl.DataFrame, tokenizer: PreTrainedTokenizerBase, max_tokens: int | None, what: str
) -> pl.DataFrame:
    """The split's pairs with their token counts and ``kept``: false where a side exceeds ``max_tokens``.

    Fails, naming the option, when more than ``MAX_DROPPED_SHARE`` of the pairs would be dropped.
    """
    counted = pairs.with_columns(
        pl.Series("pivot_tokens", token_lengths(tokenizer, pairs["pivot_text"].to_list()), dtype=pl.Int32),
        pl.Series("target_tokens", token_lengths(tokenizer, pairs["target_text"].to_list()), dtype=pl.Int32),
    )
    longest = pl.max_horizontal("pivot_tokens", "target_tokens")
    marked = counted.with_columns((longest <= max_tokens if max_tokens is not None else pl.lit(True)).alias("kept"))
    dropped = marked.height - int(marked["kept"].sum())
    if dropped:
        log.info("%s: dropped %d of %d pairs with a sentence over runtime.max_tokens = %s tokens",
                 what, dropped, marked.height, max_tokens)  # fmt: skip
    if dropped > MAX_DROPPED_SHARE * marked.height:
        raise ValueError(
            f"{what}: {dropped} of {marked.height} pairs ({dropped / marked.height:.1%}) have a sentence longer than "
            f"runtime.max_tokens = {max_tokens} tokens; more than {MAX_DROPPED_SHARE:.0%} would change what detection "
            "reads. Raise runtime.max_tokens, or set it to null to read every sentence whole."
        )
    return marked


def kept_pairs(pairs_path: Path) -> pl.DataFrame:
    """The pairs a dump holds, in its row order (``{split}.pairs.parquet`` rows with ``kept``)."""
    return pl.read_parquet(pairs_path).filter(pl.col("kept"))


def detection_pairs(
    corpus: Path, split: str, tokenizer: PreTrainedTokenizerBase, max_tokens: int | None
) -> pl.DataFrame:
    """Every pair of one split of a prepared corpus, with its token counts and ``kept``."""
    corpus_pairs = pl.read_parquet(corpus).filter(pl.col("split") == split)
    return pairs_for_detection(corpus_pairs, tokenizer, max_tokens, f"{Path(corpus).stem}/{split}")


def distinct_pivot_sentences(kept_pairs_per_language: Sequence[pl.DataFrame], split: str) -> list[str]:
    """The pivot (English) sentences of every language's kept pairs, each once, in first-seen order.

    A parallel corpus gives every language the same English sentences; they are dumped once.
    """
    seen: dict[str, None] = {}
    for pairs in kept_pairs_per_language:
        seen.update(dict.fromkeys(sentences(pairs, split, PIVOT_SIDE)))
    return list(seen)


def dump_pivot_split(
    manifest: Path, corpora: Sequence[Path], split: str, directory: Path, sentences_path: Path, *, batch_size: int,
    max_batch_tokens: int | None, max_tokens: int | None, device: str, dtype: str = "auto",
) -> None:  # fmt: skip
    """Dump, once, the distinct pivot sentences of one split's kept pairs in every corpus.

    ``sentences_path`` gets the dumped sentences in row order (``row``, ``pivot_text``); each
    language's ``dump_split`` copies its rows from here. The dump's ``active_counts`` count each
    distinct sentence once: English's LAPE counts.
    """
    loaded = load_model(manifest, device, dtype=dtype)
    kept = [detection_pairs(corpus, split, loaded.tokenizer, max_tokens).filter(pl.col("kept")) for corpus in corpora]
    texts = distinct_pivot_sentences(kept, split)
    dump_activations(loaded, texts, Path(directory), batch_size=batch_size, max_batch_tokens=max_batch_tokens,
                     description=f"{split}/{PIVOT_SIDE}")  # fmt: skip
    pl.DataFrame({"row": range(len(texts)), "pivot_text": texts}, schema={"row": pl.Int32, "pivot_text": pl.String}
                 ).write_parquet(sentences_path)  # fmt: skip
    log.info("%s: %d distinct pivot sentences dumped from %d corpora", split, len(texts), len(corpora))


def pivot_rows(texts: Sequence[str], sentences_path: Path) -> list[int]:
    """The row of each of ``texts`` in a pivot dump (``dump_pivot_split``'s sentence list)."""
    index = dict(pl.read_parquet(sentences_path).select("pivot_text", "row").iter_rows())
    missing = [text for text in texts if text not in index]
    if missing:
        raise ValueError(
            f"{sentences_path}: the pivot dump lacks {len(missing)} of this split's {len(texts)} pivot sentences "
            f"(first: {missing[0]!r}); it was dumped from other corpora. Rerun dump_pivot_activations"
        )
    return [index[text] for text in texts]


def gather_dump(source: Path, rows: Sequence[int], directory: Path) -> None:
    """A dump of ``rows`` of the dump ``source``, in that order: the stored values, copied exactly.

    The copy holds no ``active_counts``: counts over a subset cannot be cut from the source's totals.
    """
    directory.mkdir(parents=True, exist_ok=True)
    index = np.asarray(rows, dtype=np.int64)
    for name in (*STATE_ARRAYS, *EXTRA_STATES):
        copy_rows(source, directory, name, index, scaled=True)
    copy_rows(source, directory, "write_scale", index, scaled=False)
    meta = {**Dump(source).meta, "n_sentences": len(index), "counted_tokens": None, "gathered_from": source.as_posix()}
    write_meta(directory, meta)


def dump_split(
    manifest: Path, corpus: Path, split: str, directory: Path, pairs_path: Path, *, batch_size: int,
    max_batch_tokens: int | None, max_tokens: int | None, device: str, dtype: str = "auto",
    pivot_dump: tuple[Path, Path] | None = None,
) -> None:  # fmt: skip
    """Dump the English (``pivot``) and L2 (``target``) sentences of one split's kept pairs.

    ``pairs_path`` gets every pair of the split with its token counts and whether it was kept.
    ``device`` and ``dtype`` are ``runtime.device`` and ``runtime.dtype``. ``pivot_dump``,
    ``(directory, sentences_path)`` of ``dump_pivot_split``, gives the pivot side: its rows are
    copied from there instead of running the model on them again.
    """
    loaded = load_model(manifest, device, dtype=dtype)
    pairs = detection_pairs(corpus, split, loaded.tokenizer, max_tokens)
    kept = pairs.filter(pl.col("kept"))
    for side in SIDES:
        side_directory = Path(directory) / side
        if side == PIVOT_SIDE and pivot_dump is not None:
            source, sentences_path = pivot_dump
            gather_dump(Path(source), pivot_rows(sentences(kept, split, side), sentences_path), side_directory)
            continue
        dump_activations(loaded, sentences(kept, split, side), side_directory, batch_size=batch_size,
                         max_batch_tokens=max_batch_tokens, description=f"{split}/{side}")  # fmt: skip
    pairs.write_parquet(pairs_path)
    log.info("%s/%s: %d pairs dumped", Path(corpus).stem, split, kept.height)


class InMemoryDump:
    """Last-token states held in memory, read like a ``Dump`` (what the scoring stage reads of one)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays  # STATE_ARRAYS names -> [L, N, feature], and "write_scale" -> [L, N]

    @classmethod
    def of(
        cls, loaded: LoadedModel, sentences: Sequence[str], *, batch_size: int, max_batch_tokens: int | None
    ) -> InMemoryDump:
        """Every sentence's states from batched forward passes, rows in the sentences' order."""
        parts: dict[str, list] = {name: [] for name in (*STATE_ARRAYS, *EXTRA_STATES, "write_scale")}
        order = []
        for rows, states in batched_last_token_states(
            loaded, sentences, batch_size=batch_size, max_batch_tokens=max_batch_tokens
        ):
            order.extend(rows)
            for name in parts:
                block = getattr(states, name).cpu().numpy()
                parts[name].append(block[None] if name in EXTRA_STATES else block)
        corpus_order = np.argsort(order)
        return cls({name: np.concatenate(blocks, axis=1)[:, corpus_order] for name, blocks in parts.items()})

    @property
    def n_layers(self) -> int:
        return self.arrays["layer_output"].shape[0]

    def layer(self, name: str, layer: int) -> np.ndarray:
        return self.arrays[name][layer]

    def write_scale(self, layer: int) -> np.ndarray:
        return self.arrays["write_scale"][layer]

    def effective_activations(self, layer: int) -> np.ndarray:
        return effective_activations(self.layer("neuron_activations", layer), self.write_scale(layer))

    def all_layers(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def extra_state(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise KeyError(f"this in-memory dump holds no {name} array")
        return self.arrays[name][0]

    def layer_states(self, last_layer: str) -> np.ndarray:
        normed = self.extra_state("final_normed") if check_last_layer(last_layer) == "normed" else None
        return with_last_layer(self.arrays["layer_output"], normed, last_layer)
