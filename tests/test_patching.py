import copy

import numpy as np
import polars as pl
import torch

from transfer_neurons.evaluation.patching import Patch, last_token_runs, no_hooks, patch_hooks, run_name
from transfer_neurons.model.batching import copies_per_pass, last_token_forward, prefix_cache, tokenize
from transfer_neurons.model.hooks import HookSession, NeuronEdit

PAIRS = pl.DataFrame(
    {
        "pivot_text": ["The cat sleeps.", "Where is the station?", "I like green tea.", "It rains today."],
        "target_text": ["猫が寝ている。", "駅はどこですか？", "緑茶が好きです。", "今日は雨です。"],
    }
)
NEURONS = {0: [1, 5, 7], 2: [3, 10], 3: [0, 4, 40]}


def runs_for(loaded, patches, sources):
    sentences = PAIRS["target_text"].to_list()
    runs = {run_name(patch): patch_hooks(NEURONS, patch, sources) for patch in patches}
    return last_token_runs(loaded, sentences, runs, factor=0.0, max_batch_tokens=24)


def test_restoring_the_clean_activations_gives_the_clean_states(loaded):
    clean, clean_activations = last_token_runs(loaded, PAIRS["target_text"].to_list(), {"clean": no_hooks}, 0.0, 24)[
        "clean"
    ]
    sources = {"clean": clean_activations}
    every_layer = Patch("clean", "cumulative", 3, (0, 2, 3))
    corrupted, restored = Patch(None, None, None, ()), every_layer
    states = runs_for(loaded, [corrupted, restored], sources)
    np.testing.assert_allclose(states[run_name(restored)][0], clean, atol=1e-5, rtol=1e-5)
    assert not np.allclose(states["corrupted"][0][-1], clean[-1], atol=1e-4)  # the corruption did something
    first_only = Patch("clean", "single", 0, (0,))
    partly = runs_for(loaded, [first_only], sources)[run_name(first_only)][0]
    np.testing.assert_allclose(partly[0], clean[0], atol=1e-5, rtol=1e-5)  # layer 0 is clean again
    assert not np.allclose(partly[-1], clean[-1], atol=1e-4)  # later layers still miss layers 2 and 3


def test_patching_nothing_leaves_the_corrupted_states(loaded):
    zeros = np.zeros((loaded.facts.n_layers, len(PAIRS), loaded.facts.d_mlp), dtype=np.float32)
    patched = Patch("zeros", "cumulative", 3, (0, 2, 3))  # writes back what deactivation left: nothing
    states = runs_for(loaded, [Patch(None, None, None, ()), patched], {"zeros": zeros})
    np.testing.assert_allclose(states[run_name(patched)][0], states["corrupted"][0], atol=1e-6)


def one_run_at_a_time(loaded, sentences, hooks_for, factor):
    """The reference: one run alone, with the single-run hooks, from a copy of the prefix cache."""
    batch = tokenize(loaded.tokenizer, sentences)
    with torch.no_grad():
        cache = prefix_cache(loaded.model, batch)
    scaled, patches = hooks_for(list(range(len(sentences))))
    with torch.no_grad(), HookSession(loaded.adapter) as session:
        session.edit_neurons([NeuronEdit(scaled, factor, "last")])  # scaled first, then set: two edits
        session.edit_neurons([NeuronEdit(patched=patches, positions="last")])
        capture = session.capture()
        last_token_forward(loaded.model, batch, copy.deepcopy(cache))
    return capture.states.layer_output.numpy(), capture.states.neuron_activations.numpy()


def test_runs_stacked_in_one_pass_equal_each_run_alone(loaded):
    sentences = PAIRS["target_text"].to_list()
    rng = np.random.default_rng(0)
    sources = {"noise": rng.normal(size=(loaded.facts.n_layers, len(PAIRS), loaded.facts.d_mlp)).astype(np.float32)}
    patches = [
        Patch(None, None, None, ()),
        Patch("noise", "single", 2, (2,)),
        Patch("noise", "cumulative", 3, (0, 2, 3)),
    ]
    runs = {run_name(patch): patch_hooks(NEURONS, patch, sources) for patch in patches}
    stacked = last_token_runs(loaded, sentences, runs, factor=0.5, max_batch_tokens=None)  # every run in one pass
    for name, hooks_for in runs.items():
        alone = one_run_at_a_time(loaded, sentences, hooks_for, factor=0.5)
        np.testing.assert_allclose(stacked[name][0], alone[0], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(stacked[name][1], alone[1], atol=1e-5, rtol=1e-5)
    assert not np.allclose(stacked[run_name(patches[2])][0][-1], stacked["corrupted"][0][-1], atol=1e-4)


def test_copies_per_pass_keeps_the_stacked_batch_within_the_token_limit():
    assert copies_per_pass(rows=10, width=10, copies=43, max_batch_tokens=4096) == 40
    assert copies_per_pass(rows=10, width=10, copies=7, max_batch_tokens=4096) == 7
    assert copies_per_pass(rows=50, width=100, copies=43, max_batch_tokens=4096) == 1  # a long batch runs alone
    assert copies_per_pass(rows=10, width=10, copies=43, max_batch_tokens=None) == 43


def test_the_per_pair_table_averages_each_pairs_layers_and_matches_the_layer_table():
    from transfer_neurons.evaluation.patching import patching_tables

    rng = np.random.default_rng(0)
    english = rng.normal(size=(3, 8, 5))
    clean = english + rng.normal(scale=0.3, size=english.shape)
    corrupted = rng.normal(size=english.shape)
    patches = [Patch(None, None, None, ()), Patch("clean", "cumulative", 2, (0, 2)), Patch("mean", "single", 0, (0,))]
    patched = {"corrupted": corrupted, "clean/cumulative/2": clean, "mean/single/0": (clean + corrupted) / 2}
    by_layer, by_pair = patching_tables(english, clean, patched, patches, k=3)
    assert set(by_pair["source"]) == {"clean", "mean"}  # the corrupted run is every row's "corrupted"
    assert by_pair.height == 2 * 2 * 8  # runs x metrics x pairs
    restored = by_pair.filter(pl.col("source") == "clean")
    np.testing.assert_allclose(restored["value"], restored["clean"])  # patched with clean values: clean again
    cosines = by_pair.filter((pl.col("source") == "mean") & (pl.col("metric") == "parallel_cosine")).sort("pair")
    expected = np.einsum("lnd,lnd->ln", english, (clean + corrupted) / 2) / (
        np.linalg.norm(english, axis=-1) * np.linalg.norm((clean + corrupted) / 2, axis=-1)
    )
    np.testing.assert_allclose(cosines["value"], expected.mean(axis=0))
    # the mean over pairs of each pair's layer mean is the mean over layers of each layer's alignment
    keys = ["source", "scope", "patched_layer", "metric"]
    pair_means = by_pair.group_by(keys).agg(pl.col("value", "clean", "corrupted").mean())
    layer_means = (
        by_layer.filter(pl.col("source").is_not_null()).group_by(keys).agg(pl.col("value", "clean", "corrupted").mean())
    )
    joined = pair_means.join(layer_means, on=keys, suffix="_layers")
    assert joined.height == 4
    for column in ("value", "clean", "corrupted"):
        np.testing.assert_allclose(joined[column], joined[f"{column}_layers"])
