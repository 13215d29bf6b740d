"""What the neuron browser shows of each selected neuron, computed from the model and the dumps.

The selected neurons are every neuron of a main top-N list (any language, type and detector).
Three stages, one table each (tidy, one row per observation):

* ``run_neuron_tokens`` (per language): one extra forward pass over the test sentences of both
  sides, reading every position's neuron activations (the input of the down projection). Per neuron
  and text language (the L2, and English from the same pairs), the ``top_sentences`` sentences whose
  largest activation over their text tokens is highest, with every token's activation and its piece
  of the sentence. One row per token.
* ``run_neuron_lens`` (per model): each neuron's write vector read by the model's final norm and
  unembedding: the tokens it promotes and suppresses most, with their logits and the scripts of their
  letters (``script_shares``: the share of a neuron's promoted tokens in each language's script).
* ``run_neuron_profiles`` (per model, no model pass): per neuron and language, the mean last-token
  activation over the test dumps (the token the paper scores) and LAPE's activation probability,
  with the neuron's LAPE entropy over the languages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch

from transfer_neurons.data.dumps import Dump, kept_pairs, language_tokens
from transfer_neurons.data.tidy import labelled
from transfer_neurons.detection.lape import activation_probabilities, lape_entropy
from transfer_neurons.detection.stages import language_activity
from transfer_neurons.evaluation.language_id import IDENTIFIABLE, answer_letters, letter_script
from transfer_neurons.model.adapters import FamilyAdapter
from transfer_neurons.model.batching import decoder_forward, length_sorted_batches, token_lengths, tokenize
from transfer_neurons.model.hooks import capture_states
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.model.logits import unembedded
from transfer_neurons.names import PIVOT_SIDE, TARGET_SIDE

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

PROMOTED, SUPPRESSED = "promoted", "suppressed"


RANKINGS = ("max", "max_abs")


@dataclass(frozen=True)
class TokenSettings:
    """``top_sentences`` kept per neuron and text language, ranked by their largest activation (``max``)
    or largest in magnitude (``max_abs``: gated MLPs also write with large negative activations);
    batching as ``runtime`` sets it."""

    top_sentences: int = 5
    batch_size: int = 32
    max_batch_tokens: int | None = None
    rank_by: str = "max"

    def __post_init__(self) -> None:
        if self.top_sentences < 1:
            raise ValueError(f"evaluation.browser.top_sentences must be at least 1, got {self.top_sentences}")
        if self.rank_by not in RANKINGS:
            raise ValueError(f"evaluation.browser.rank_by must be one of {RANKINGS}, got {self.rank_by!r}")


def selected_neurons(top_lists: Sequence[str | Path], main_label: str) -> pl.DataFrame:
    """Every (layer, neuron) of the ``main_label`` top-N lists in ``top_lists`` (parquet files of any
    language and detector), once each, sorted -> columns layer, neuron (Int32)."""
    frames = [pl.read_parquet(path, columns=["top_n_label", "layer", "neuron"]) for path in top_lists]
    top = pl.concat(frames).filter(pl.col("top_n_label") == str(main_label))
    if top.is_empty():
        raise ValueError(f"no neuron in the top-N lists {list(map(str, top_lists))} has top_n_label {main_label!r}")
    return top.select(pl.col("layer").cast(pl.Int32), pl.col("neuron").cast(pl.Int32)).unique().sort("layer", "neuron")


# --- token-level activations ---------------------------------------------------------------------


@dataclass(frozen=True)
class SentenceTokens:
    """One sentence's real tokens (special ones included): ids, vocabulary strings, and ``pieces``,
    the sentence's text cut at the tokens (their concatenation is the sentence)."""

    ids: list[int]
    tokens: list[str]
    pieces: list[str]
    special: list[bool]


def token_pieces(tokenizer: PreTrainedTokenizerBase, sentence: str, ids: Sequence[int]) -> list[str]:
    """The piece of ``sentence`` each token of ``ids`` (its tokenization, special tokens included) covers.

    Character offsets cut the sentence; the text between two tokens goes to the later one, so the
    pieces add up to the sentence. Tokens that share a character (bytes of one character) leave the
    later ones an empty piece, as do special tokens. Without offsets (a slow tokenizer), each token
    is decoded alone.
    """
    try:
        encoded = tokenizer(sentence, add_special_tokens=True, return_offsets_mapping=True)
    except (NotImplementedError, ValueError):
        encoded = {}
    if "offset_mapping" not in encoded:  # transformers 5's Python tokenizers ignore the request
        return [str(tokenizer.decode([token_id])) for token_id in ids]  # str: one id list decodes to one text
    if list(encoded["input_ids"]) != list(ids):
        raise ValueError(
            f"tokenizing {sentence!r} alone gave other ids than its batch: {encoded['input_ids']} vs {ids}"
        )
    pieces, covered = [], 0
    for start, end in encoded["offset_mapping"]:
        if start == end:  # special tokens have no span
            pieces.append("")
            continue
        pieces.append(sentence[covered:end] if end > covered else "")
        covered = max(covered, end)
    if pieces:
        pieces[-1] += sentence[covered:]
    return pieces


def sentence_tokens(tokenizer: PreTrainedTokenizerBase, sentence: str, ids: Sequence[int]) -> SentenceTokens:
    special_ids = set(tokenizer.all_special_ids)
    return SentenceTokens(
        ids=list(ids),
        tokens=[str(token) for token in tokenizer.convert_ids_to_tokens(list(ids))],
        pieces=token_pieces(tokenizer, sentence, ids),
        special=[token_id in special_ids for token_id in ids],
    )


class TopSentences:
    """Per neuron, the ``k`` sentences with the highest maximum activation seen so far (of its magnitude,
    ``by_magnitude``), with the activation of each of their tokens. Fed batch by batch, so memory holds
    ``k`` sentences per neuron."""

    def __init__(self, n_neurons: int, k: int, by_magnitude: bool = False) -> None:
        self.k, self.by_magnitude = k, by_magnitude
        self.values = np.full((n_neurons, k), -np.inf, dtype=np.float32)  # [n, k] each kept sentence's max
        self.rows = np.full((n_neurons, k), -1, dtype=np.int64)  # [n, k] its sentence index; -1: empty slot
        self.tokens: dict[tuple[int, int], np.ndarray] = {}  # (neuron index, sentence) -> [tokens] activations

    def update(self, rows: Sequence[int], activations: np.ndarray, real: np.ndarray, counted: np.ndarray) -> None:
        """Offer the sentences ``rows`` [B]: ``activations`` [B, pos, n] float32, ``real`` [B, pos] their
        tokens (not padding), ``counted`` [B, pos] the tokens whose maximum ranks a sentence."""
        keys = np.abs(activations) if self.by_magnitude else activations
        batch_max = np.where(counted[:, :, None], keys, -np.inf).max(axis=1).T  # [n, B]
        n_neurons = batch_max.shape[0]
        values = np.concatenate([self.values, batch_max], axis=1)
        sentence = np.concatenate([self.rows, np.broadcast_to(np.asarray(rows), (n_neurons, len(rows)))], axis=1)
        # Stable, so a sentence already kept wins a tie against a later one.
        order = np.argsort(-values, axis=1, kind="stable")[:, : self.k]
        self.values = np.take_along_axis(values, order, axis=1)
        self.rows = np.take_along_axis(sentence, order, axis=1)
        for neuron, slot in zip(*np.nonzero(order >= self.k), strict=True):
            in_batch = order[neuron, slot] - self.k
            self.tokens[(int(neuron), int(self.rows[neuron, slot]))] = activations[in_batch, real[in_batch], neuron]
        neuron_index, slot_index = np.nonzero(self.rows >= 0)
        kept = set(zip(neuron_index.tolist(), self.rows[neuron_index, slot_index].tolist(), strict=True))
        for key in [key for key in self.tokens if key not in kept]:
            del self.tokens[key]

    def kept(self) -> Iterator[tuple[int, int, int, float, np.ndarray]]:
        """Yield ``(neuron index, rank from 1, sentence, its ranking maximum, token activations)``."""
        for neuron, slot in zip(*np.nonzero(self.rows >= 0), strict=True):
            row = int(self.rows[neuron, slot])
            yield int(neuron), int(slot) + 1, row, float(self.values[neuron, slot]), self.tokens[(int(neuron), row)]


def peak_activation(values: np.ndarray, special: Sequence[bool], by_magnitude: bool) -> np.float32:
    """The signed activation of the text token that ranks a sentence (special tokens count only in a
    sentence of nothing else): the largest, or the largest in magnitude."""
    text = values[~np.asarray(special)] if not all(special) else values
    return text[np.argmax(np.abs(text) if by_magnitude else text)]


def neuron_token_activations(
    loaded: LoadedModel, sentences: Sequence[str], neurons: pl.DataFrame, *, settings: TokenSettings
) -> pl.DataFrame:
    """Each neuron's top sentences among ``sentences``, token by token.

    ``neurons`` has columns layer, neuron (n rows). One forward pass per length-sorted batch reads
    every position's activations of the neurons' layers. Returns one row per token of each kept
    sentence: layer, neuron, sentence (index into ``sentences``), sentence_rank (1 = first),
    peak_activation (the activation that ranks the sentence: the largest over its text tokens, not
    special ones, or the largest in magnitude, with its sign), ranked_by (``settings.rank_by``),
    last_activation (at the last token, the one the paper scores), position, token_id, token, text
    (the piece of the sentence), special, last, activation.
    """
    layers = sorted(set(neurons["layer"].to_list()))
    layer_slot = {layer: slot for slot, layer in enumerate(layers)}
    slots = torch.tensor([layer_slot[layer] for layer in neurons["layer"].to_list()])
    units = torch.tensor(neurons["neuron"].to_list())
    top = TopSentences(neurons.height, settings.top_sentences, by_magnitude=settings.rank_by == "max_abs")
    ids_by_row: dict[int, list[int]] = {}
    lengths = token_lengths(loaded.tokenizer, sentences)
    for rows in length_sorted_batches(lengths, settings.batch_size, settings.max_batch_tokens):
        batch = tokenize(loaded.tokenizer, [sentences[row] for row in rows]).to(loaded.device)
        with torch.no_grad(), capture_states(loaded.adapter, layers, last_token_only=False) as captured:
            decoder_forward(loaded.model, batch)
        states = captured["states"].neuron_activations  # [layers, B, pos, d_mlp]
        # Indices on the first and last axes: [n, B, pos], then [B, pos, n].
        chosen = states[slots.to(states.device), :, :, units.to(states.device)].permute(1, 2, 0)
        real = batch.attention_mask.bool()
        counted = language_tokens(loaded.tokenizer, batch)
        top.update(rows, chosen.cpu().numpy(), real.cpu().numpy(), counted.cpu().numpy())
        for index, row in enumerate(rows):
            ids_by_row[row] = batch.input_ids[index][real[index]].tolist()
    table = _token_rows(top, neurons, sentences, ids_by_row, loaded.tokenizer)
    return table.with_columns(pl.lit(settings.rank_by).alias("ranked_by"))


def _token_rows(
    top: TopSentences, neurons: pl.DataFrame, sentences: Sequence[str], ids_by_row: Mapping[int, Sequence[int]],
    tokenizer: PreTrainedTokenizerBase,
) -> pl.DataFrame:  # fmt: skip
    layers, units = neurons["layer"].to_numpy(), neurons["neuron"].to_numpy()
    described: dict[int, SentenceTokens] = {}
    columns: dict[str, list] = {name: [] for name in (
        "layer", "neuron", "sentence", "sentence_rank", "peak_activation", "last_activation", "position",
        "token_id", "token", "text", "special", "last", "activation")}  # fmt: skip
    for index, rank, row, _, values in top.kept():
        if row not in described:
            described[row] = sentence_tokens(tokenizer, sentences[row], ids_by_row[row])
        tokens = described[row]
        count = len(values)
        columns["layer"].append(np.full(count, layers[index], dtype=np.int32))
        columns["neuron"].append(np.full(count, units[index], dtype=np.int32))
        columns["sentence"].append(np.full(count, row, dtype=np.int32))
        columns["sentence_rank"].append(np.full(count, rank, dtype=np.int32))
        columns["peak_activation"].append(np.full(count, peak_activation(values, tokens.special, top.by_magnitude)))
        columns["last_activation"].append(np.full(count, values[-1], dtype=np.float32))
        columns["position"].append(np.arange(count, dtype=np.int32))
        columns["token_id"].append(np.asarray(tokens.ids, dtype=np.int64))
        columns["token"].append(tokens.tokens)
        columns["text"].append(tokens.pieces)
        columns["special"].append(tokens.special)
        columns["last"].append(np.arange(count) == count - 1)
        columns["activation"].append(values.astype(np.float32))
    schema = {"layer": pl.Int32, "neuron": pl.Int32, "sentence": pl.Int32, "sentence_rank": pl.Int32,
              "peak_activation": pl.Float32, "last_activation": pl.Float32, "position": pl.Int32,
              "token_id": pl.Int64, "token": pl.String, "text": pl.String, "special": pl.Boolean,
              "last": pl.Boolean, "activation": pl.Float32}  # fmt: skip
    if not columns["layer"]:
        return pl.DataFrame(schema=schema)
    data = {
        name: np.concatenate(parts) if isinstance(parts[0], np.ndarray) else [x for part in parts for x in part]
        for name, parts in columns.items()
    }
    return pl.DataFrame(data, schema=schema).sort("layer", "neuron", "sentence_rank", "position")


def run_neuron_tokens(
    manifest: Path, test_pairs: Path, top_lists: Sequence[Path], *, language: str, pivot: str, main_label: str,
    settings: TokenSettings, device: str, model_name: str,
    dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """The ``neuron_tokens`` rule: the selected neurons' top sentences among one language's test pairs,
    on both sides -> the rows of ``neuron_token_activations`` with model, language (the L2 of the
    pairs), side, text_language (the pivot or the L2) and the pair's id."""
    neurons = selected_neurons(top_lists, main_label)
    loaded = load_model(manifest, device, dtype=dtype, tokenizer_offsets=True)  # the pieces are cut by offsets
    pairs = kept_pairs(test_pairs)
    frames = []
    for side, column, text_language in ((PIVOT_SIDE, "pivot_text", pivot), (TARGET_SIDE, "target_text", language)):
        start = time.perf_counter()
        table = neuron_token_activations(loaded, pairs[column].to_list(), neurons, settings=settings)
        log.info("%s/%s: %d sentences, %d neurons, top %d each: %.1f s", language, side, pairs.height,
                 neurons.height, settings.top_sentences, time.perf_counter() - start)  # fmt: skip
        ids = pairs["id"].gather(table["sentence"])
        frames.append(table.with_columns(pl.lit(side).alias("side"), pl.lit(text_language).alias("text_language"),
                                         ids.alias("id")))  # fmt: skip
    return labelled(pl.concat(frames), model=model_name, language=language)


# --- logit lens of the write vectors ---------------------------------------------------------------


def lens_logits(adapter: FamilyAdapter, vectors: torch.Tensor) -> torch.Tensor:
    """[n, d_model] residual-stream vectors -> [n, vocab] float32 logits, as the model reads each vector
    if it were the whole last residual state: the unembedding of its final norm, less the unembedding of
    the norm of a zero vector (so LayerNorm's bias and the unembedding's bias, shared by every vector,
    drop out). The norm rescales the vector, so the logits do not depend on its length. They are
    before any logit scale (Cohere) or soft-capping (Gemma 2), which keep the tokens' order."""
    offset = unembedded(adapter, torch.zeros_like(vectors[:1]))
    return (unembedded(adapter, vectors) - offset).float()


def neuron_lens(loaded: LoadedModel, neurons: pl.DataFrame, n_tokens: int, chunk: int = 64) -> pl.DataFrame:
    """Per neuron (``neurons``: layer, neuron), the ``n_tokens`` tokens its write vector promotes and
    suppresses most -> rows: layer, neuron, direction (promoted | suppressed), rank (1 = strongest),
    token_id, token (vocabulary string), text (the token decoded alone), script (``token_scripts``: the
    scripts of its letters), logit."""
    if n_tokens < 1:
        raise ValueError(f"evaluation.browser.lens_tokens must be at least 1, got {n_tokens}")
    tokenizer = loaded.tokenizer
    vocabulary = len(tokenizer)  # rows of the unembedding past the tokenizer's are padding
    frames = []
    for (layer,), group in neurons.group_by("layer", maintain_order=True):
        units = group["neuron"].to_list()
        vectors = loaded.adapter.write_vectors(layer)
        for start in range(0, len(units), chunk):
            part = units[start : start + chunk]
            logits = lens_logits(loaded.adapter, vectors[part])[:, :vocabulary].cpu()
            for direction, signed in ((PROMOTED, logits), (SUPPRESSED, -logits)):
                _, ids = signed.topk(min(n_tokens, vocabulary), dim=-1)
                frames.append(_lens_rows(tokenizer, layer, part, direction, ids, logits.gather(1, ids)))
    return pl.concat(frames)


def _lens_rows(
    tokenizer: PreTrainedTokenizerBase, layer: int, units: Sequence[int], direction: str, ids: torch.Tensor,
    logits: torch.Tensor,
) -> pl.DataFrame:  # fmt: skip
    flat_ids = ids.reshape(-1).tolist()
    count = ids.shape[1]
    texts = [str(tokenizer.decode([token_id])) for token_id in flat_ids]  # str: one id list decodes to one text
    return pl.DataFrame(
        {
            "layer": np.full(len(flat_ids), layer, dtype=np.int32),
            "neuron": np.repeat(np.asarray(units, dtype=np.int32), count),
            "direction": direction,
            "rank": np.tile(np.arange(1, count + 1, dtype=np.int32), len(units)),
            "token_id": np.asarray(flat_ids, dtype=np.int64),
            "token": [str(token) for token in tokenizer.convert_ids_to_tokens(flat_ids)],
            "text": texts,
            "script": [token_scripts(text) for text in texts],
            "logit": logits.reshape(-1).numpy().astype(np.float32),
        }
    )


# --- the scripts of a neuron's tokens -----------------------------------------------------------------
OTHER_SCRIPT = "other"  # letters of a script no language of language_id.IDENTIFIABLE writes


def token_scripts(text: str) -> str:
    """The scripts of a token's letters (``language_id.letter_script``), sorted and joined by "+": "Latin",
    "Han+Kana", "Latin+other"; "" for a token without letters (spaces, digits, punctuation, bytes)."""
    scripts = {letter_script(letter) or OTHER_SCRIPT for letter in answer_letters(text)}
    return "+".join(sorted(scripts))


def in_language_scripts(scripts: str, lang: str) -> bool:
    """Whether a token (``token_scripts``) has letters and all of them in scripts ``lang`` is written in
    (``language_id.IDENTIFIABLE``; Japanese: kana and Han)."""
    return bool(scripts) and set(scripts.split("+")) <= IDENTIFIABLE[lang].scripts


def script_shares(
    lens: pl.DataFrame, languages: Sequence[str], keys: Sequence[str] = ("layer", "neuron")
) -> pl.DataFrame:
    """Per ``keys`` (a neuron) and language: the share of its listed tokens (``lens`` rows with ``keys`` and
    ``script``: one direction of ``neuron_lens``) written in the language's scripts, and how many tokens
    -> columns ``keys``, script_language, share, n_tokens.

    A token without letters counts in the denominator: it is in no language's script. Latin-script
    languages (English, Dutch, Italian...) share one script, so their shares are equal.
    """
    unknown = [lang for lang in languages if lang not in IDENTIFIABLE]
    if unknown:
        raise ValueError(f"no script known for language(s) {unknown}: add them to language_id.IDENTIFIABLE")
    scripts = lens["script"].to_list()
    frames = []
    for lang in languages:
        inside = pl.Series("inside", [in_language_scripts(value, lang) for value in scripts], dtype=pl.Float64)
        shares = lens.select(*keys).with_columns(inside).group_by(*keys, maintain_order=True)
        frames.append(
            shares.agg(pl.col("inside").mean().alias("share"), pl.len().cast(pl.Int32).alias("n_tokens"))
            .with_columns(pl.lit(lang).alias("script_language"))
            .select(*keys, "script_language", "share", "n_tokens")
        )
    return pl.concat(frames)


def run_neuron_lens(
    manifest: Path, top_lists: Sequence[Path], *, main_label: str, n_tokens: int, device: str, model_name: str,
    dtype: str = "auto",
) -> pl.DataFrame:  # fmt: skip
    """The ``neuron_lens`` rule: ``neuron_lens`` of every selected neuron, with the model's name."""
    loaded = load_model(manifest, device, dtype=dtype)
    return labelled(neuron_lens(loaded, selected_neurons(top_lists, main_label), n_tokens), model=model_name)


# --- activation and LAPE profiles ------------------------------------------------------------------


def mean_last_token_activations(
    test_dumps: Mapping[str, Path], neurons: pl.DataFrame, pivot: str
) -> dict[str, np.ndarray]:
    """Per text language, each neuron's mean activation at the last token of the test sentences ->
    {language: [n]}. The pivot (English) is the pivot side of the first language's dump, as the
    specificity analysis reads it; every L2 its own dump's target side."""
    first = next(iter(test_dumps.values()))
    sources = {pivot: Dump(Path(first) / PIVOT_SIDE)}
    sources.update({lang: Dump(Path(path) / TARGET_SIDE) for lang, path in test_dumps.items()})
    layers, units = neurons["layer"].to_numpy(), neurons["neuron"].to_numpy()
    means = {}
    for lang, dump in sources.items():
        values = np.empty(neurons.height, dtype=np.float64)
        for layer in np.unique(layers):
            chosen = layers == layer
            values[chosen] = dump.layer("neuron_activations", int(layer))[:, units[chosen]].mean(axis=0)
        means[lang] = values
    return means


def neuron_profiles(
    test_dumps: Mapping[str, Path], train_dumps: Mapping[str, Path], neurons: pl.DataFrame, *, pivot: str,
    pivot_train_dump: Path | None = None,
) -> pl.DataFrame:  # fmt: skip
    """One row per neuron and language (pivot first): layer, neuron, text_language, mean_activation
    (last token, test sentences), lape_probability (share of the language's training tokens on which
    the neuron is active) and lape_entropy (the neuron's LAPE entropy over all languages, natural log;
    low: it fires for few languages). English's LAPE counts: ``language_activity`` with
    ``pivot_train_dump``."""
    means = mean_last_token_activations(test_dumps, neurons, pivot)
    train_directories = {lang: Path(path) for lang, path in train_dumps.items()}
    languages, counts, tokens = language_activity(train_directories, pivot, pivot_train_dump)
    probabilities = activation_probabilities(counts, tokens)  # [languages, layers, d_mlp]
    layers, units = neurons["layer"].to_numpy(), neurons["neuron"].to_numpy()
    entropy = lape_entropy(probabilities)[layers, units]
    frames = [
        pl.DataFrame(
            {
                "layer": layers.astype(np.int32),
                "neuron": units.astype(np.int32),
                "text_language": lang,
                "mean_activation": means[lang],
                "lape_probability": probabilities[index, layers, units],
                "lape_entropy": entropy,
            }
        )
        for index, lang in enumerate(languages)
    ]
    return pl.concat(frames)


def run_neuron_profiles(
    test_dumps: Mapping[str, Path], train_dumps: Mapping[str, Path], top_lists: Sequence[Path], *, pivot: str,
    main_label: str, model_name: str, pivot_train_dump: Path | None = None,
) -> pl.DataFrame:  # fmt: skip
    """The ``neuron_profiles`` rule: ``neuron_profiles`` of every selected neuron, with the model's name."""
    neurons = selected_neurons(top_lists, main_label)
    profiles = neuron_profiles(test_dumps, train_dumps, neurons, pivot=pivot, pivot_train_dump=pivot_train_dump)
    return labelled(profiles, model=model_name)


__all__ = [
    "TokenSettings",
    "TopSentences",
    "in_language_scripts",
    "lens_logits",
    "mean_last_token_activations",
    "neuron_lens",
    "neuron_profiles",
    "neuron_token_activations",
    "peak_activation",
    "run_neuron_lens",
    "run_neuron_profiles",
    "run_neuron_tokens",
    "script_shares",
    "selected_neurons",
    "token_pieces",
    "token_scripts",
]
