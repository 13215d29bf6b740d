"""Evaluation stages as functions from files to files (what the Snakemake rules call)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
from safetensors.numpy import load_file, save_file

from transfer_neurons.conditions import build_conditions
from transfer_neurons.corpus import sentences
from transfer_neurons.dumps import Dump
from transfer_neurons.evaluation import InterventionSettings, evaluate_attention, evaluate_qa, evaluate_states
from transfer_neurons.models import load_model
from transfer_neurons.qa import load_qa
from transfer_neurons.scoring import candidate_layers
from transfer_neurons.similarity import centroid_similarity_matrix, pca_2d
from transfer_neurons.specificity import eta_squared_anova

log = logging.getLogger(__name__)

FOCUS_CONDITIONS = ("normal", "type1", "type2")


def manifest_facts(manifest: Path) -> dict:
    return json.loads(Path(manifest).read_text())["facts"]


def tag(frame: pl.DataFrame, **labels: str) -> pl.DataFrame:
    """Prepend constant label columns (model, language...) to a tidy table."""
    return frame.with_columns([pl.lit(value).alias(name) for name, value in labels.items()]).select(
        *labels, *frame.columns
    )


def make_conditions(manifest: Path, top: Path, *, type1_fraction: float, main_label: str, seeds, sweep_seeds,
                    layer_matched: bool) -> pl.DataFrame:  # fmt: skip
    facts = manifest_facts(manifest)
    return build_conditions(
        pl.read_parquet(top),
        candidate_layers(facts["n_layers"], type1_fraction),
        facts["d_mlp"],
        main_label=str(main_label),
        seeds=list(seeds),
        sweep_seeds=list(sweep_seeds),
        layer_matched=layer_matched,
    )


def pca_layer_indices(n_layers: int, fractions) -> list[int]:
    """Layers at the given fractions of depth (0 = first, 1 = last), without repeats."""
    return sorted({min(n_layers - 1, round(fraction * (n_layers - 1))) for fraction in fractions})


def run_state_evaluation(
    manifest: Path, corpus: Path, test_dump: Path, conditions: Path, settings: InterventionSettings, *,
    knn_ks, device: str, labels: dict, arrays_path: Path,
) -> pl.DataFrame:  # fmt: skip
    """Alignment metrics under every condition; saves the L2 test centroids [L, d] per condition."""
    model, tokenizer, adapter = load_model(manifest, device)
    target_sentences = sentences(pl.read_parquet(corpus), "test", "target")
    table = pl.read_parquet(conditions)
    metrics, centroids = evaluate_states(
        model, tokenizer, adapter, Dump(Path(test_dump) / "pivot"), target_sentences, table, settings, knn_ks
    )
    arrays = {f"centroid/{name}": value.astype(np.float32) for name, value in centroids.items()}
    save_file(arrays, str(arrays_path))
    return tag(metrics, **labels)


def run_qa_evaluation(
    manifest: Path, qa_source: dict, lang: str, conditions: Path, settings: InterventionSettings, *,
    kinds, template: str, max_new_tokens: int, limit, device: str, labels: dict, main_label: str,
    include_sweep: bool,
) -> pl.DataFrame:  # fmt: skip
    """QA under the conditions of the chosen kinds; the N sweep only when ``include_sweep``."""
    model, tokenizer, adapter = load_model(manifest, device)
    records = load_qa(qa_source, [lang], limit)
    table = pl.read_parquet(conditions).filter(pl.col("kind").is_in(list(kinds)))
    if not include_sweep:
        table = table.filter((pl.col("kind") == "normal") | (pl.col("top_n_label") == str(main_label)))
    results = evaluate_qa(
        model, tokenizer, adapter, records, lang, table, settings, template=template, max_new_tokens=max_new_tokens
    )
    return tag(results, **labels)


def run_attention(
    manifest: Path, corpus: Path, conditions: Path, settings: InterventionSettings, *, n_sentences: int,
    seed: int, device: str, labels: dict,
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Attention shift for normal, Type-1, Type-2 and the first random seed of each type."""
    model, tokenizer, adapter = load_model(manifest, device, attn_implementation="eager")
    target_sentences = sentences(pl.read_parquet(corpus), "test", "target")[:n_sentences]
    wanted = [*FOCUS_CONDITIONS, f"random_type1_s{seed}", f"random_type2_s{seed}"]
    table = pl.read_parquet(conditions).filter(pl.col("condition").is_in(wanted))
    shifts, example = evaluate_attention(model, tokenizer, adapter, target_sentences, table, settings)
    return tag(shifts, **labels), tag(example, **labels)


def run_language_space(
    english_test_dump: Path, arrays_by_language: dict[str, Path], *, pivot: str, pca_fractions, labels: dict,
    target_test_dumps: dict[str, Path],
) -> tuple[pl.DataFrame, pl.DataFrame]:  # fmt: skip
    """Centroid similarities of all languages per layer and condition, and a 2-D PCA (normal states)."""
    english = Dump(Path(english_test_dump) / "pivot").all_layers("layer_output")
    english_centroids = english.mean(axis=1)
    per_language = {lang: load_file(str(path)) for lang, path in arrays_by_language.items()}
    rows = []
    for condition in FOCUS_CONDITIONS:
        for layer in range(english.shape[0]):
            centroids = {pivot: english_centroids[layer]}
            centroids.update({lang: arrays[f"centroid/{condition}"][layer] for lang, arrays in per_language.items()})
            for language_a, language_b, cosine in centroid_similarity_matrix(centroids):
                rows.append({"condition": condition, "layer": layer, "language_a": language_a,
                             "language_b": language_b, "cosine": cosine})  # fmt: skip
    similarity = tag(pl.DataFrame(rows), **labels)
    projection_rows = []
    for layer in pca_layer_indices(english.shape[0], pca_fractions):
        states = {pivot: english[layer]}
        states.update(
            {lang: Dump(Path(path) / "target").layer("layer_output", layer) for lang, path in target_test_dumps.items()}
        )
        stacked = np.concatenate(list(states.values()))
        projected = pca_2d(stacked)
        names = np.concatenate([[lang] * len(values) for lang, values in states.items()])
        projection_rows.extend(
            {"layer": layer, "language": name, "pc1": float(x), "pc2": float(y)}
            for name, (x, y) in zip(names, projected, strict=True)
        )
    return similarity, tag(pl.DataFrame(projection_rows), **labels)


def run_specificity(
    test_dumps: dict[str, Path], top_lists: dict[str, Path], *, pivot: str, main_label: str, labels: dict
) -> pl.DataFrame:
    """eta^2 and ANOVA p of every top-N neuron over the test sentences of all languages."""
    first = next(iter(test_dumps.values()))
    sources = {pivot: Dump(Path(first) / "pivot")}
    sources.update({lang: Dump(Path(path) / "target") for lang, path in test_dumps.items()})
    frames = []
    for lang, top_path in top_lists.items():
        top = pl.read_parquet(top_path).filter(pl.col("top_n_label") == str(main_label))
        for (neuron_type, layer), group in top.group_by("type", "layer", maintain_order=True):
            neurons = group["neuron"].to_numpy()
            activations = np.concatenate(
                [dump.layer("neuron_activations", layer)[:, neurons] for dump in sources.values()]
            )
            language_labels = np.concatenate([[name] * dump.meta["n_sentences"] for name, dump in sources.items()])
            eta, p_value = eta_squared_anova(activations, language_labels)
            frames.append(pl.DataFrame({"language": lang, "type": neuron_type, "layer": layer,
                                        "neuron": neurons, "eta_squared": eta, "p_value": p_value}))  # fmt: skip
    return tag(pl.concat(frames), **labels)


def run_detector_agreement(top_by_detector: dict[str, dict[str, Path]], *, labels: dict) -> pl.DataFrame:
    """Per language, type, N and layer: how many top-N neurons the two detectors share."""
    (name_a, paths_a), (name_b, paths_b) = list(top_by_detector.items())[:2]
    frames = []
    for lang in paths_a:
        tables = [pl.read_parquet(paths_a[lang]), pl.read_parquet(paths_b[lang])]
        keys = ["top_n_label", "type", "layer", "neuron"]
        a, b = (table.select(keys) for table in tables)
        shared = a.join(b, on=keys, how="inner").group_by("top_n_label", "type", "layer").len("shared")
        counts_a = a.group_by("top_n_label", "type", "layer").len(f"n_{name_a}")
        counts_b = b.group_by("top_n_label", "type", "layer").len(f"n_{name_b}")
        merged = (
            counts_a.join(counts_b, on=["top_n_label", "type", "layer"], how="full", coalesce=True)
            .join(shared, on=["top_n_label", "type", "layer"], how="left")
            .fill_null(0)
            .with_columns(pl.lit(lang).alias("language"))
        )
        frames.append(merged)
    return tag(pl.concat(frames).sort("language", "top_n_label", "type", "layer"), **labels)
