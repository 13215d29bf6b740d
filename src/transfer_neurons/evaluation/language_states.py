"""Last-token states of parallel questions in every language, for the language-space analyses.

With ``evaluation.language_space.sentences: questions`` the language-space analyses read row-aligned
(parallel) questions, as the paper's do (its ``analysis/lang_latent_space``: 1000 MKQA questions in
ja, nl, ko, it and en): the QA set's ``queries`` in every language, or the authors' own
``mkqa_example_sentences.pkl`` (read without running code). The ``language_states`` rule computes
their states here, one job per model:

* each L2 under normal and under each chosen condition (its own Type-1 or Type-2 neurons
  deactivated), the conditions stacked as rows of one pass; English once, never intervened;
* per layer, the last token's state; the last layer as ``runtime.last_layer`` says (``normed``:
  HF's ``hidden_states[-1]``, as the authors read it), the embedding output first with ``embedding``.

The directory it writes holds ``{language}/{condition}.npy`` (float16 values, ``.scale.npy`` float32
scales: ``data.storage``), [layers, questions, d_model], ``questions.parquet`` (one column per
language) and ``meta.json`` (languages, conditions, layer indices, -1 being the embedding).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.dumps import with_last_layer
from transfer_neurons.data.storage import ScaledArrayWriter, read_scaled
from transfer_neurons.evaluation.conditions import InterventionSettings, condition_neurons
from transfer_neurons.model.batching import (
    TokenizedBatch,
    copies_per_pass,
    decoder_forward,
    last_token_forward,
    length_sorted_batches,
    pass_groups,
    prefix_cache,
    stacked_rows,
    token_lengths,
    tokenize,
)
from transfer_neurons.model.hooks import CapturedStates, HookSession, NeuronEdit, touches_only_last_token
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.names import NORMAL

log = logging.getLogger(__name__)

EMBEDDING_LAYER = -1  # the layer index of the embedding output (HF's hidden_states[0])
META = "meta.json"
QUESTIONS = "questions.parquet"


class LanguageStatesError(ValueError):
    pass


# --- the questions ---------------------------------------------------------------------------------
def parallel_questions(source: Mapping, languages: Sequence[str], limit: int | None = None) -> pl.DataFrame:
    """Row-aligned questions: one row per question, one column per language of ``languages``.

    ``source`` is ``{"qa": <evaluation.qa.source>}`` (the QA set's ``queries``, the questions QA asks,
    in file or hub order) or ``{"authors": <path of mkqa_example_sentences.pkl>}``. ``limit`` keeps
    the first ``limit`` rows. Errors name the source and the language missing.
    """
    if "qa" in source:
        from transfer_neurons.data.qa import load_qa, question_of

        records = load_qa(source["qa"], list(languages), limit)
        table = pl.DataFrame({lang: [question_of(record, lang).strip() for record in records] for lang in languages})
        where = "evaluation.qa.source"
    elif "authors" in source:
        from transfer_neurons.data.authors_data import authors_parallel_questions

        table = authors_parallel_questions(source["authors"])
        where = str(source["authors"])
        missing = [lang for lang in languages if lang not in table.columns]
        if missing:
            raise LanguageStatesError(f"{where}: no questions in {', '.join(missing)} (it has {table.columns})")
        table = table.select(list(languages))
    else:
        raise LanguageStatesError(f"evaluation.language_space.questions: expected qa or authors, got {dict(source)}")
    table = table.head(limit) if limit else table
    if table.height == 0:
        raise LanguageStatesError(f"{where}: no questions to read")
    return table


# --- the states --------------------------------------------------------------------------------------
def layer_indices(n_layers: int, embedding: bool) -> list[int]:
    """The layer column of the language-space tables: -1 (the embedding) first where included, then 0..L-1."""
    return ([EMBEDDING_LAYER] if embedding else []) + list(range(n_layers))


def states_as_read(states: CapturedStates, *, embedding: bool, last_layer: str) -> np.ndarray:
    """[layers, batch, d_model] float32: the embedding output first (with ``embedding``), then every
    layer's state, the last one as ``last_layer`` (``runtime.last_layer``) says."""
    layers = with_last_layer(states.layer_output, states.final_normed, last_layer)
    if embedding:
        if states.embedding is None:
            raise ValueError("the states were captured without the embedding output (capture(embedding=True))")
        layers = torch.cat([states.embedding[None], layers])
    return layers.cpu().numpy()


def stacked_states(
    loaded: LoadedModel, batch: TokenizedBatch, edits: Sequence[NeuronEdit], *, embedding: bool, last_layer: str
) -> list[np.ndarray]:
    """Every edit's states of the batch ([layers, batch, d_model] each, ``states_as_read``) from one pass
    over ``len(edits)`` stacked copies of it, copy k under edit k.

    Where no edit reaches a token before the last, the prefix runs once and the copies run only the
    last token from it (each its own copy of the cache); otherwise the whole stacked batch runs.
    """
    copies, width = len(edits), batch.input_ids.shape[1]
    stacked = stacked_rows(batch, copies)
    share_prefix = width > 1 and all(touches_only_last_token(edit.positions) for edit in edits)
    with torch.no_grad(), HookSession(loaded.adapter) as session:
        if share_prefix:
            cache = prefix_cache(loaded.model, batch)  # before any hook: every condition's prefix is normal
            cache.batch_repeat_interleave(copies)
        session.edit_neurons(edits, prompt_length=width, start=width - 1 if share_prefix else 0)
        capture = session.capture(final_norm=last_layer == "normed", embedding=embedding)
        if share_prefix:
            last_token_forward(loaded.model, stacked, cache)
        else:
            decoder_forward(loaded.model, stacked)
    states = capture.states
    return [states_as_read(states.rows(k, copies), embedding=embedding, last_layer=last_layer) for k in range(copies)]


def language_states(
    loaded: LoadedModel, sentences: Sequence[str], edits: Mapping[str, NeuronEdit], directory: Path, *,
    settings: InterventionSettings, embedding: bool, last_layer: str, description: str = "states",
) -> None:  # fmt: skip
    """Write the states of ``sentences`` under every edit (condition name -> edit) to
    ``directory/{condition}.npy``: [layers, N, d_model], rows in the sentences' order.

    Batches are length-sorted, of at most ``settings.max_batch_tokens`` tokens; each pass takes as many
    conditions' copies of a batch as that budget allows.
    """
    facts = loaded.facts
    n_layers = len(layer_indices(facts.n_layers, embedding))
    names = list(edits)
    writers = {name: ScaledArrayWriter(directory, name, n_layers, len(sentences), facts.d_model) for name in names}
    lengths = token_lengths(loaded.tokenizer, sentences)
    batches = length_sorted_batches(lengths, settings.batch_size, settings.max_batch_tokens)
    with tqdm(total=len(sentences), desc=description, unit="sentence") as progress:
        for rows in batches:
            batch = tokenize(loaded.tokenizer, [sentences[row] for row in rows]).to(loaded.device)
            width = batch.input_ids.shape[1]
            per_pass = copies_per_pass(len(rows), width, len(names), settings.max_batch_tokens)
            for group in pass_groups(names, per_pass):
                blocks = stacked_states(
                    loaded, batch, [edits[name] for name in group], embedding=embedding, last_layer=last_layer
                )
                for name, block in zip(group, blocks, strict=True):
                    writers[name].write(rows, block)
            progress.update(len(rows))
    for writer in writers.values():
        writer.close()


def condition_edits(
    conditions: pl.DataFrame, names: Sequence[str], settings: InterventionSettings
) -> dict[str, NeuronEdit]:
    """``normal`` and each named condition of one language's conditions table, as edits."""
    available = set(conditions["condition"])
    missing = [name for name in names if name not in available]
    if missing:
        raise LanguageStatesError(f"conditions table has no condition {', '.join(missing)}")
    chosen = [NORMAL, *(name for name in names if name != NORMAL)]
    return {
        name: NeuronEdit(condition_neurons(conditions, name), settings.factor, settings.positions) for name in chosen
    }


def run_language_states(
    manifest: Path, conditions_by_language: Mapping[str, Path], directory: Path, *, source: Mapping, pivot: str,
    conditions: Sequence[str], settings: InterventionSettings, embedding: bool, last_layer: str,
    max_questions: int | None, device: str, dtype: str = "auto",
) -> dict:  # fmt: skip
    """The ``language_states`` rule: states of the parallel questions of ``pivot`` and every language of
    ``conditions_by_language`` (language -> its conditions table), written under ``directory``.

    Returns the metadata written to ``meta.json``.
    """
    languages = [pivot, *conditions_by_language]
    questions = parallel_questions(source, languages, max_questions)
    loaded = load_model(manifest, device, dtype=dtype)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    by_language = {pivot: {NORMAL: NeuronEdit({}, settings.factor, settings.positions)}}
    for lang, path in conditions_by_language.items():
        by_language[lang] = condition_edits(pl.read_parquet(path), conditions, settings)
    for lang, edits in by_language.items():
        language_states(
            loaded, questions[lang].to_list(), edits, directory / lang, settings=settings, embedding=embedding,
            last_layer=last_layer, description=f"{lang} states",
        )  # fmt: skip
    questions.write_parquet(directory / QUESTIONS)
    meta = {
        "languages": languages,
        "pivot": pivot,
        "conditions": {lang: list(edits) for lang, edits in by_language.items()},
        "layers": layer_indices(loaded.facts.n_layers, embedding),
        "n_questions": questions.height,
        "last_layer": last_layer,
        "positions": settings.positions,
        "dtype": loaded.dtype_name,
    }
    (directory / META).write_text(json.dumps(meta, indent=2))
    log.info("%d questions in %s", questions.height, ", ".join(languages))
    return meta


class StoredLanguageStates:
    """Read access to a ``language_states`` directory: one language's states under one condition and layer."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        meta_path = self.directory / META
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory} holds no language states (no {META})")
        self.meta = json.loads(meta_path.read_text())
        self.languages: list[str] = self.meta["languages"]
        self.layers: list[int] = self.meta["layers"]
        self.pivot: str = self.meta["pivot"]

    def has(self, condition: str, language: str) -> bool:
        return language == self.pivot or condition in self.meta["conditions"][language]

    def states(self, condition: str, language: str, layer: int) -> np.ndarray:
        """[N, d_model] float32; English's are its normal states under every condition."""
        if not self.has(condition, language):
            raise LanguageStatesError(f"{self.directory}: no states of {language} under {condition!r}")
        name = NORMAL if language == self.pivot else condition
        return read_scaled(self.directory / language, name, self.layers.index(layer))
