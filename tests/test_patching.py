import numpy as np
import polars as pl

from transfer_neurons.evaluation.patching import Patch, last_token_runs, no_hooks, patch_hooks, run_name

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
