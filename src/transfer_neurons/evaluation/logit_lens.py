"""The logit lens: where does the latent language turn English?

At each layer the last prompt token's residual state is read as if it were the last layer's: through
the model's final norm, unembedding and logit scale or soft-cap (``model.logits.residual_logits``; at
the last layer these are the model's own logits). Its softmax gives two probabilities per question:
of the first token of the gold answer in the question's language, and of the first token of the same
record's English answer (after the same prompt). If the model works in an English-centric latent
space (Wendler et al. 2024, "Do Llamas work in English?"), the English token rises in the middle
layers before the L2 token takes over at the end; if Type-1 neurons carry the L2 into that space,
deactivating them should weaken the English phase more than their controls do.

**Questions.** The QA set's questions (the QA analysis's source, template, decoding and question
filter), of which those whose greedy answer under the normal run reaches MKQA F1 >= ``threshold``: a
question the model does not answer gives no answer token to follow. The normal run's answers are
generated here, so ``limit`` can reach further than the QA analysis's.

**The answer's first token.** The token the model would write right after the prompt's tokens. The
paper's prompts end in a space ("Antwoord: "); Gemma's tokenizer reads it as a token of its own
("▁"), which merges with the answer's first letters when prompt and answer are tokenized together
("▁Paris"), so that the prompt's tokens are no prefix of the pair's. Where they are a prefix, the
first token after them is the answer's; where they are not, the model has already read the space,
and the answer's text is tokenized on its own, after an anchor (a line break) so that no tokenizer
adds a word-start marker: "Paris", not "▁Paris". A question whose L2 and English answers start with
the same token ("Tokyo") cannot tell the two apart: it is kept in the table and marked.

**Conditions** are rows of shared passes (``evaluation.states.batch_states_by_run``), deactivated at
the positions of ``evaluation.logit_lens.positions`` (``prompt``: every prompt token, the paper's QA
setting), read at the prompt's last token, the position that predicts the answer's first token.

Beside it, the per-neuron logit lens of each deactivated neuron (``neuron_tokens.neuron_lens``): the
share of its write vector's top promoted tokens written in the L2's and in English's script.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
import torch
from tqdm import tqdm

from transfer_neurons.data.languages import language
from transfer_neurons.data.qa import answers_of, gold_texts, load_qa, question_of
from transfer_neurons.data.tidy import labelled
from transfer_neurons.evaluation.conditions import (
    InterventionSettings,
    condition_info,
    condition_names,
    condition_neurons,
    condition_runs,
    select_conditions,
)
from transfer_neurons.evaluation.language_id import ENGLISH, QUESTION_LANGUAGE
from transfer_neurons.evaluation.mkqa_scoring import best_em_f1
from transfer_neurons.evaluation.neuron_tokens import PROMOTED, neuron_lens, script_shares
from transfer_neurons.evaluation.qa import STOP_MODES, answer_texts, continuations_by_run, prompt_template
from transfer_neurons.evaluation.states import batch_states_by_run
from transfer_neurons.model.batching import length_sorted_batches, token_lengths, tokenize
from transfer_neurons.model.hooks import NeuronEdit
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.model.logits import residual_logits
from transfer_neurons.names import NORMAL

if TYPE_CHECKING:
    from polars._typing import SchemaDict
    from transformers import PreTrainedTokenizerBase

    from transfer_neurons.model.adapters import FamilyAdapter

log = logging.getLogger(__name__)

TARGETS = (QUESTION_LANGUAGE, ENGLISH)  # whose answer's first token: the question's language's, English's
ANCHOR = "\n"  # what a text is tokenized after when it must start mid-sequence, without a word-start marker

LENS_SCHEMA: SchemaDict = {
    "condition": pl.String,
    "example_id": pl.String,
    "layer": pl.Int32,
    "target": pl.String,
    "token_id": pl.Int64,
    "token": pl.String,
    "log_probability": pl.Float64,  # natural log
    "probability": pl.Float64,
    "normal_f1": pl.Float64,
    "prediction": pl.String,
    "same_token": pl.Boolean,
    "first_generated": pl.Boolean,
    "questions_asked": pl.Int32,
}


@dataclass(frozen=True)
class LogitLensSettings:
    """The ``evaluation.logit_lens`` config section, with the QA settings it reuses and the browser's
    number of promoted tokens per write vector."""

    threshold: float  # questions whose normal-run answer reaches this MKQA F1
    kinds: tuple[str, ...]  # condition kinds (normal is always run)
    seeds: tuple[int, ...] | None  # the drawn controls' seeds (None: every one)
    limit: int | None  # the first this many questions the filter keeps (None: every one)
    template: str | Mapping[str, str]
    max_new_tokens: int
    stop: str
    question_filter: str
    lens_tokens: int  # promoted tokens per write vector in the neurons' script shares
    pivot: str = "en"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"evaluation.logit_lens.threshold must lie in [0, 1], got {self.threshold}")
        if self.stop not in STOP_MODES:
            raise ValueError(f"evaluation.qa.stop must be one of {STOP_MODES}, got {self.stop!r}")


# --- the answer's first token ------------------------------------------------------------------------
def continuation_ids(tokenizer: PreTrainedTokenizerBase, prompt: str, text: str) -> list[int]:
    """The token ids of ``text`` as the model writes it right after ``prompt``'s tokens (special tokens
    as ``model.batching.tokenize`` adds them). See the module docstring for the two cases."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    joined = tokenizer(prompt + text, add_special_tokens=True)["input_ids"]
    if joined[: len(prompt_ids)] == prompt_ids:
        return joined[len(prompt_ids) :]
    # The prompt's last token merged with the text's first letters: the model has read the prompt's
    # tokens as they are, so the text follows them alone.
    anchor = tokenizer(ANCHOR, add_special_tokens=False)["input_ids"]
    anchored = tokenizer(ANCHOR + text, add_special_tokens=False)["input_ids"]
    if anchored[: len(anchor)] != anchor:
        raise ValueError(f"tokenizing {ANCHOR!r} + {text!r} changes the anchor's tokens; cannot cut {text!r} off")
    return anchored[len(anchor) :]


def first_answer_text(record: dict, lang: str) -> str | None:
    """The first non-empty gold text of ``lang`` (the first answer's text, else the next gold string)."""
    return next((text for text in gold_texts(answers_of(record, lang)) if text.strip()), None)


def answer_first_tokens(
    tokenizer: PreTrainedTokenizerBase, prompt: str, record: dict, lang: str, pivot: str
) -> tuple[int, int] | None:
    """The first token id of the record's ``lang`` answer and of its ``pivot`` (English) answer, each as
    it would follow ``prompt``; None where either language has no gold text."""
    ids = []
    for code in (lang, pivot):
        text = first_answer_text(record, code)
        tokens = continuation_ids(tokenizer, prompt, text) if text else []
        if not tokens:
            return None
        ids.append(tokens[0])
    return ids[0], ids[1]


# --- the questions the model answers ------------------------------------------------------------------
def normal_answers(
    loaded: LoadedModel, records: Sequence[dict], prompts: Sequence[str], lang: str, settings: LogitLensSettings,
    max_batch_tokens: int | None,
) -> pl.DataFrame:  # fmt: skip
    """The normal run's greedy answer to each prompt, as the QA analysis generates and scores it ->
    one row per question: example_id, prediction, normal_f1, first_id (the first generated token)."""
    generated = continuations_by_run(loaded, prompts, {NORMAL: NeuronEdit()}, max_new_tokens=settings.max_new_tokens,
                                     stop=settings.stop, max_batch_tokens=max_batch_tokens)[NORMAL]  # fmt: skip
    texts = answer_texts(loaded.tokenizer, generated, settings.stop)
    key = language(lang).mkqa_key
    return pl.DataFrame(
        {
            "example_id": [str(record.get("example_id", index)) for index, record in enumerate(records)],
            "prediction": texts,
            "normal_f1": [
                best_em_f1(text, gold_texts(answers_of(record, lang)), key)[1]
                for text, record in zip(texts, records, strict=True)
            ],  # fmt: skip
            "first_id": [ids[0] if ids else -1 for ids in generated],
        },
        schema={"example_id": pl.String, "prediction": pl.String, "normal_f1": pl.Float64, "first_id": pl.Int64},
    )


# --- the lens -----------------------------------------------------------------------------------------
def lens_log_probabilities(
    adapter: FamilyAdapter, states: torch.Tensor, targets: torch.Tensor, chunk: int = 64
) -> torch.Tensor:
    """[L, B, d_model] raw residual states and [B, T] token ids -> [L, B, T] float32: each target token's
    log-probability in the softmax of ``residual_logits`` of each state (``chunk`` rows of logits at a time).
    Logs, since a probability in an early layer can lie below float32's smallest number."""
    layers, rows = states.shape[:2]
    flat = states.reshape(layers * rows, -1)
    wanted = targets.repeat(layers, 1)  # row l * B + b asks for targets[b]
    found = []
    for start in range(0, flat.shape[0], chunk):
        logits = residual_logits(adapter, flat[start : start + chunk])
        chosen = wanted[start : start + chunk].to(logits.device)
        # logit - logsumexp: the log-softmax at the chosen tokens, without a second [rows, vocab] tensor.
        found.append((logits.gather(1, chosen) - logits.logsumexp(dim=-1, keepdim=True)).cpu())
    return torch.cat(found).reshape(layers, rows, -1)


def probabilities_by_run(
    adapter: FamilyAdapter, states: Mapping[str, torch.Tensor], targets: torch.Tensor, reference: str
) -> dict[str, torch.Tensor]:
    """``lens_log_probabilities`` of each run's [L, B, d_model] states; a layer whose states equal the
    ``reference`` run's exactly (below a run's first edited layer) reuses the reference's values."""
    computed = {reference: lens_log_probabilities(adapter, states[reference], targets)}
    for name, layer_states in states.items():
        if name == reference:
            continue
        same = [torch.equal(layer_states[layer], states[reference][layer]) for layer in range(layer_states.shape[0])]
        values = computed[reference].clone()
        differing = [layer for layer, equal in enumerate(same) if not equal]
        if differing:
            values[differing] = lens_log_probabilities(adapter, layer_states[differing], targets)
        computed[name] = values
    return computed


def lens_by_run(
    loaded: LoadedModel, prompts: Sequence[str], targets: np.ndarray, runs: Mapping[str, NeuronEdit],
    intervention: InterventionSettings,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per run, [L, N, T] log-probabilities of each prompt's ``targets`` [N, T] token ids at every layer,
    read at the prompt's last token, the runs as rows of shared passes."""
    lengths = token_lengths(loaded.tokenizer, prompts)
    batches = length_sorted_batches(lengths, intervention.batch_size, intervention.max_batch_tokens)
    reference = NORMAL if NORMAL in runs else next(iter(runs))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in runs}
    with tqdm(total=len(batches), desc="logit lens batches", unit="batch") as progress:
        for rows in batches:
            batch = tokenize(loaded.tokenizer, [prompts[row] for row in rows]).to(loaded.device)
            wanted = torch.as_tensor(targets[rows], dtype=torch.long)
            found = batch_states_by_run(loaded, batch, runs, intervention.max_batch_tokens)
            states = {name: layer_states for name, (layer_states, _) in found.items()}
            for name, values in probabilities_by_run(loaded.adapter, states, wanted, reference).items():
                parts[name].append(values.numpy())
            progress.update(1)
    order = np.argsort(np.concatenate([np.asarray(rows) for rows in batches]))
    return {name: np.concatenate(chunks, axis=1)[:, order] for name, chunks in parts.items()}


def lens_rows(
    log_probabilities: Mapping[str, np.ndarray],
    questions: pl.DataFrame,
    targets: np.ndarray,
    tokenizer: PreTrainedTokenizerBase,
) -> pl.DataFrame:
    """Tidy rows (``LENS_SCHEMA`` less ``questions_asked``) of every run, question, layer and target from
    each run's [L, N, T] log-probabilities, ``questions`` (one row per question) and ``targets`` [N, T]."""
    frames = []
    n_questions, n_targets = targets.shape
    tokens = np.asarray(tokenizer.convert_ids_to_tokens(targets.reshape(-1).tolist()), dtype=object)
    for name, values in log_probabilities.items():
        layers = values.shape[0]
        # values[layer, question, target], flattened in that order.
        frames.append(
            pl.DataFrame(
                {
                    "condition": name,
                    "question": np.tile(np.repeat(np.arange(n_questions), n_targets), layers),
                    "layer": np.repeat(np.arange(layers, dtype=np.int32), n_questions * n_targets),
                    "target": np.tile(np.asarray(TARGETS), layers * n_questions),
                    "token_id": np.tile(targets.reshape(-1), layers),
                    "token": np.tile(tokens, layers).tolist(),
                    "log_probability": values.reshape(-1).astype(np.float64),
                }
            )
        )
    per_question = questions.with_row_index("question").with_columns(pl.col("question").cast(pl.Int64))
    return (
        pl.concat(frames)
        .with_columns(pl.col("question").cast(pl.Int64))
        .join(per_question, on="question")
        .drop("question")
    )


def evaluate_logit_lens(
    loaded: LoadedModel, records: Sequence[dict], lang: str, conditions: pl.DataFrame,
    intervention: InterventionSettings, settings: LogitLensSettings,
) -> pl.DataFrame:  # fmt: skip
    """One row per (condition, answered question, layer, target): the probability of the target answer's
    first token in the logit lens of the prompt's last token (``LENS_SCHEMA``, then the condition's
    kind, type, N and seed). Empty (with the columns) when the model answers no question well enough."""
    template = prompt_template(settings.template, lang)
    prompts = [template.format(question=question_of(record, lang)) for record in records]
    start = time.perf_counter()
    answered = normal_answers(loaded, records, prompts, lang, settings, intervention.max_batch_tokens)
    chosen, targets = [], []
    for index, row in enumerate(answered.iter_rows(named=True)):
        if row["normal_f1"] < settings.threshold:
            continue
        tokens = answer_first_tokens(loaded.tokenizer, prompts[index], records[index], lang, settings.pivot)
        if tokens is None:
            log.info("%s: question %s has no gold text in %s or %s; skipped", lang, row["example_id"], lang,
                     settings.pivot)  # fmt: skip
            continue
        chosen.append(index)
        targets.append(tokens)
    log.info("%s: %d of %d questions answered with MKQA F1 >= %g (normal answers: %.1f s)", lang, len(chosen),
             len(records), settings.threshold, time.perf_counter() - start)  # fmt: skip
    info = condition_info(conditions)
    if not chosen:
        empty = pl.DataFrame(schema=LENS_SCHEMA)
        return empty.join(info, on="condition", how="left")
    target_ids = np.asarray(targets, dtype=np.int64)  # [N, 2]: the L2 answer's, English's
    questions = (
        answered[chosen]
        .with_columns(
            pl.Series("same_token", target_ids[:, 0] == target_ids[:, 1]),
            pl.Series("first_generated", answered[chosen]["first_id"].to_numpy() == target_ids[:, 0]),
        )
        .drop("first_id")
    )
    runs = condition_runs(conditions, intervention)
    start = time.perf_counter()
    log_probabilities = lens_by_run(loaded, [prompts[index] for index in chosen], target_ids, runs, intervention)
    log.info("%s: the lens of %d runs x %d questions: %.1f s", lang, len(runs), len(chosen),
             time.perf_counter() - start)  # fmt: skip
    table = lens_rows(log_probabilities, questions, target_ids, loaded.tokenizer).with_columns(
        pl.col("log_probability").exp().alias("probability"), pl.lit(len(records), pl.Int32).alias("questions_asked")
    )
    return table.select(*LENS_SCHEMA).cast(pl.Schema(LENS_SCHEMA)).join(info, on="condition", how="left")


# --- the write vectors' scripts -----------------------------------------------------------------------
def condition_neuron_scripts(
    loaded: LoadedModel, conditions: pl.DataFrame, languages: Sequence[str], n_tokens: int
) -> pl.DataFrame:
    """Per deactivated condition and neuron: the share of the ``n_tokens`` tokens its write vector promotes
    most (``neuron_tokens.neuron_lens``) written in each of ``languages``' scripts -> columns condition,
    layer, neuron, script_language, share, n_tokens, then the condition's kind, type, N and seed."""
    pairs = [
        (name, layer, neuron)
        for name in condition_names(conditions)
        for layer, neurons in condition_neurons(conditions, name).items()
        for neuron in neurons
    ]
    schema = {"condition": pl.String, "layer": pl.Int32, "neuron": pl.Int32}
    members = pl.DataFrame(pairs, schema=schema, orient="row")
    if members.is_empty():
        shares = pl.DataFrame(schema={**schema, "script_language": pl.String, "share": pl.Float64,
                                      "n_tokens": pl.Int32})  # fmt: skip
    else:
        neurons = members.select("layer", "neuron").unique().sort("layer", "neuron")
        lens = neuron_lens(loaded, neurons, n_tokens).filter(pl.col("direction") == PROMOTED)
        shares = members.join(script_shares(lens, languages), on=["layer", "neuron"], how="left")
    return shares.join(condition_info(conditions), on="condition", how="left")


def run_logit_lens(
    manifest: Path, conditions: Path, qa_source: dict, settings: LogitLensSettings,
    intervention: InterventionSettings, *, main_label: str, device: str, labels: dict, dtype: str = "auto",
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """The ``evaluate_logit_lens`` rule for one language (``labels["language"]``): the lens table
    (``evaluate_logit_lens``) and the deactivated neurons' script shares (``condition_neuron_scripts``,
    in the L2's and English's scripts), both labelled with model and language."""
    lang = labels["language"]
    loaded = load_model(manifest, device, dtype=dtype)
    table = select_conditions(pl.read_parquet(conditions), (NORMAL, *settings.kinds), main_label, seeds=settings.seeds)
    records = load_qa(qa_source, [lang], settings.limit, question_filter=settings.question_filter)
    lens = evaluate_logit_lens(loaded, records, lang, table, intervention, settings)
    start = time.perf_counter()
    scripts = condition_neuron_scripts(loaded, table, [lang, settings.pivot], settings.lens_tokens)
    log.info("%s: the write vectors' scripts: %.1f s", lang, time.perf_counter() - start)
    return labelled(lens, **labels), labelled(scripts, **labels)
