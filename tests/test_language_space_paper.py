"""The language-space analyses against the authors' analysis/lang_latent_space scripts.

* svd.py: uncentred SVD per language and layer, k = searchsorted(cumsum(s^2 / sum s^2), t) + 1;
* pca.py: one sklearn PCA(n_components=2) per layer, fit on all languages' states, each transformed;
* centroids_dis.py: cosine of the uncentred language means;
* get_hs_for_lang_latent_space_visualization.py: hidden_states of parallel questions (embedding at 0,
  the last normed), each L2 with its own neurons zeroed at the last position, English never.
"""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import save_file
from sklearn.decomposition import PCA

from tests.tiny import save_tiny_model
from tests.workflow_helpers import REPO
from transfer_neurons.data.dumps import Dump, dump_activations
from transfer_neurons.evaluation.conditions import InterventionSettings
from transfer_neurons.evaluation.language_space import (
    DumpStates,
    QuestionStates,
    centroid_similarities,
    check_pca_conditions,
    components_for_variance,
    language_pca,
    pca_2d,
    pca_layers,
    read_centroid_arrays,
    run_language_space,
    svd_dimensions,
)
from transfer_neurons.evaluation.language_states import (
    EMBEDDING_LAYER,
    layer_indices,
    parallel_questions,
    run_language_states,
    stacked_states,
)
from transfer_neurons.model.batching import decoder_forward, tokenize
from transfer_neurons.model.hooks import NeuronEdit, scaled_neurons
from transfer_neurons.model.loading import load_model, prepare_model

QA_SOURCE = {"path": str(REPO / "data" / "qa" / "builtin_mkqa.jsonl")}


class ArrayStates:
    """A language-state source over given arrays: language -> [layers, N, d] (normal only)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays, self.languages, self.pivot = arrays, list(arrays), next(iter(arrays))
        self.layers = list(range(next(iter(arrays.values())).shape[0]))

    def has(self, condition, language):
        return condition == "normal"

    def states(self, condition, language, layer):
        return self.arrays[language][layer]

    def centroid(self, condition, language, layer):
        return self.arrays[language][layer].mean(axis=0)


# --- SVD -------------------------------------------------------------------------------------------
def matrix_with_singular_values(values, rows=30, columns=12, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    left, _ = np.linalg.qr(rng.normal(size=(rows, len(values))))
    right, _ = np.linalg.qr(rng.normal(size=(columns, len(values))))
    return left @ np.diag(values) @ right.T


def test_svd_counts_components_as_svd_py():
    # s^2 = 9, 4, 1: cumulative shares 0.643, 0.929, 1.0
    counts = components_for_variance(matrix_with_singular_values([3.0, 2.0, 1.0]))
    assert counts == {0.9: 2, 0.95: 3, 0.99: 3}


def test_svd_reaching_a_threshold_exactly_counts_that_component():
    # s^2 = 9, 1: the first direction holds exactly 0.9, and searchsorted (left) stops there. The
    # states are diagonal so that the SVD is exact: a rotated matrix gives 0.8999999999999999 on some
    # CPUs and 0.9 on others.
    states = np.zeros((30, 12))
    states[0, 0], states[1, 1] = 3.0, 1.0
    assert components_for_variance(states, [0.9]) == {0.9: 1}
    assert components_for_variance(states, [0.9 + 1e-12]) == {0.9 + 1e-12: 2}  # just past it: both


def test_svd_is_uncentred():
    rng = np.random.default_rng(1)
    offset = 50.0 * np.ones((40, 8)) + rng.normal(scale=0.1, size=(40, 8))  # one big shared direction
    assert components_for_variance(offset, [0.95]) == {0.95: 1}
    centred = offset - offset.mean(axis=0)
    assert components_for_variance(centred, [0.95])[0.95] > 1  # centring would count the noise


def test_svd_dimensions_table():
    rng = np.random.default_rng(2)
    source = ArrayStates({"en": rng.normal(size=(2, 6, 5)), "ja": rng.normal(size=(2, 6, 5))})
    table = svd_dimensions(source)
    assert table.height == 2 * 2 * 3
    assert set(table["threshold"]) == {0.9, 0.95, 0.99} and (table["sentences"] == 6).all()
    assert (table["components"] <= 5).all()


# --- PCA -------------------------------------------------------------------------------------------
def test_pca_is_sklearns_fit_on_every_language_then_each_transformed():
    rng = np.random.default_rng(3)
    arrays = {lang: rng.normal(loc=shift, size=(1, 20, 6)) for lang, shift in (("en", 0.0), ("ja", 2.0), ("it", -1))}
    table = language_pca(ArrayStates(arrays), [0])
    fitted = PCA(n_components=2, svd_solver="full").fit(np.concatenate([array[0] for array in arrays.values()]))
    for lang, array in arrays.items():
        ours = table.filter(pl.col("language") == lang).sort("sentence").select("pc1", "pc2").to_numpy()
        np.testing.assert_allclose(ours, fitted.transform(array[0]), atol=1e-10)
    assert set(table["condition"]) == {"normal"}


def test_pca_2d_signs_like_sklearn():
    vectors = np.random.default_rng(4).normal(size=(15, 7))
    np.testing.assert_allclose(pca_2d(vectors), PCA(n_components=2, svd_solver="full").fit_transform(vectors),
                               atol=1e-10)  # fmt: skip


def test_type2_pca_layers_are_the_type2_range():
    assert pca_layers("type2", 32, depths=[0.5], type1_fraction=0.625) == list(range(20, 32))
    assert pca_layers("depths", 32, depths=[0.25, 1.0], type1_fraction=0.625) == [8, 31]


# --- centroid similarity ---------------------------------------------------------------------------
def test_centroid_similarity_uses_uncentred_means():
    rng = np.random.default_rng(5)
    arrays = {"en": 10 + rng.normal(size=(1, 8, 4)), "ja": 10 + rng.normal(size=(1, 8, 4))}
    table = centroid_similarities(ArrayStates(arrays), ["normal"])
    cosine = table.filter((pl.col("language_a") == "en") & (pl.col("language_b") == "ja"))["cosine"].item()
    en, ja = arrays["en"][0].mean(axis=0), arrays["ja"][0].mean(axis=0)
    assert cosine == pytest.approx(en @ ja / np.linalg.norm(en) / np.linalg.norm(ja))
    assert cosine > 0.99  # the shared offset stays in: centring first would leave noise


# --- the test path: dumps and the state evaluation's centroids -------------------------------------
@pytest.fixture
def test_dumps(tmp_path, loaded):
    sentences = {"en": ["The cat sleeps.", "Where is it?", "A long sentence is here."],
                 "ja": ["猫はソファで寝ています。", "駅はどこですか？", "はい"]}  # fmt: skip
    dump_activations(loaded, sentences["en"], tmp_path / "ja" / "pivot", batch_size=2, max_batch_tokens=None)
    dump_activations(loaded, sentences["ja"], tmp_path / "ja" / "target", batch_size=2, max_batch_tokens=None)
    n_layers, d_model = loaded.facts.n_layers, loaded.facts.d_model
    normal = Dump(tmp_path / "ja" / "target").layer_states("normed").mean(axis=1)  # as evaluate_states saves it
    centroids = {"centroid/normal": normal, **{f"centroid/{name}": np.full((n_layers, d_model), value, np.float32)
                                               for name, value in (("type1", 2.0), ("type2", 3.0))}}  # fmt: skip
    save_file(centroids, str(tmp_path / "ja.safetensors"), metadata={"last_layer": "normed"})
    return tmp_path


def test_dump_source_reads_the_embedding_and_the_state_evaluations_centroids(test_dumps, loaded):
    arrays = read_centroid_arrays({"ja": test_dumps / "ja.safetensors"}, "normed")
    source = DumpStates(test_dumps / "ja", {"ja": test_dumps / "ja"}, arrays, pivot="en", embedding=True,
                        last_layer="normed")  # fmt: skip
    assert source.layers == [EMBEDDING_LAYER, *range(loaded.facts.n_layers)]
    table = centroid_similarities(source, ["normal", "type2"])
    by = {(row["condition"], row["layer"]): row["cosine"] for row in table.filter(
        (pl.col("language_a") == "en") & (pl.col("language_b") == "ja")).iter_rows(named=True)}  # fmt: skip
    # No deactivation reaches the embedding output: every condition has the normal one there.
    assert by["type2", EMBEDDING_LAYER] == pytest.approx(by["normal", EMBEDDING_LAYER])
    np.testing.assert_allclose(source.centroid("type2", "ja", 0), 3.0)
    with pytest.raises(ValueError, match="pca_conditions"):
        check_pca_conditions(source, ["normal", "type2"])
    projection = language_pca(source, [loaded.facts.n_layers - 1])
    assert projection.height == 6


def test_centroids_saved_with_the_other_last_layer_are_refused(test_dumps):
    with pytest.raises(ValueError, match="runtime.last_layer is raw"):
        read_centroid_arrays({"ja": test_dumps / "ja.safetensors"}, "raw")
    # Without the metadata, the normal centroid itself shows which last layer it holds.
    arrays = read_centroid_arrays({"ja": test_dumps / "ja.safetensors"}, "normed")
    with pytest.raises(ValueError, match="hold the normed last layer, but runtime.last_layer is raw"):
        DumpStates(test_dumps / "ja", {"ja": test_dumps / "ja"}, arrays, pivot="en", embedding=False, last_layer="raw")


# --- the questions path: the language_states job ----------------------------------------------------
def test_parallel_questions_are_row_aligned_queries_of_the_qa_set():
    table = parallel_questions({"qa": QA_SOURCE}, ["en", "ja", "it"], limit=3)
    assert table.columns == ["en", "ja", "it"] and table.height == 3
    assert table["en"][0] == "What is the capital of France?"
    assert table["ja"][0] == "フランスの首都はどこですか？"


def hidden_states(loaded, sentences, neurons=None):
    """The authors' reading: output_hidden_states at the last token, their edit at the last position."""
    batch = tokenize(loaded.tokenizer, sentences)
    with torch.no_grad(), scaled_neurons(loaded.adapter, neurons or {}, 0.0, "last"):
        output = decoder_forward(loaded.model, batch, output_hidden_states=True)
    return np.stack([states[:, -1].float().numpy() for states in output.hidden_states])


@pytest.fixture(scope="module")
def question_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("language_states")
    prepare_model("tiny", {"path": str(save_tiny_model("llama", root / "model"))}, root / "out")
    manifest = root / "out" / "manifest.json"
    rows = [("normal", None, None), *(("type1", 0, neuron) for neuron in (1, 5, 7)),
            *(("type2", layer, neuron) for layer, neuron in ((2, 3), (3, 0), (3, 9)))]  # fmt: skip
    conditions = pl.DataFrame(rows, schema={"condition": pl.String, "layer": pl.Int32, "neuron": pl.Int32},
                              orient="row")  # fmt: skip
    conditions.write_parquet(root / "ja.parquet")
    meta = run_language_states(
        manifest, {"ja": root / "ja.parquet"}, root / "states", source={"qa": QA_SOURCE}, pivot="en",
        conditions=["type1", "type2"], settings=InterventionSettings(0.0, 4, 64, "last"), embedding=True,
        last_layer="normed", max_questions=7, device="cpu",
    )  # fmt: skip
    return root, meta, load_model(manifest, device="cpu"), conditions


def test_language_states_are_the_authors_hidden_states(question_run):
    root, meta, loaded, conditions = question_run
    assert meta["layers"] == layer_indices(loaded.facts.n_layers, True) == [-1, 0, 1, 2, 3]
    assert meta["conditions"] == {"en": ["normal"], "ja": ["normal", "type1", "type2"]}
    questions = pl.read_parquet(root / "states" / "questions.parquet")
    source = QuestionStates(root / "states")
    runs = [("en", "normal", None), ("ja", "normal", None), ("ja", "type2", {2: [3], 3: [0, 9]}),
            ("ja", "type1", {0: [1, 5, 7]})]  # fmt: skip
    for lang, condition, neurons in runs:
        expected = hidden_states(loaded, questions[lang].to_list(), neurons)  # [L + 1, N, d], the last normed
        ours = np.stack([source.states(condition, lang, layer) for layer in meta["layers"]])
        np.testing.assert_allclose(ours, expected, atol=2e-3 * np.abs(expected).max(), rtol=0)
    # English is never intervened on: its states are the normal ones under every condition.
    np.testing.assert_array_equal(source.states("type2", "en", 3), source.states("normal", "en", 3))
    assert not np.allclose(source.states("type2", "ja", 3), source.states("normal", "ja", 3))


def test_language_space_on_questions_has_every_condition(question_run):
    root, meta, loaded, _ = question_run
    similarity, projection, dimensions = run_language_space(
        QuestionStates(root / "states"), conditions=["normal", "type1", "type2"], pca_layer_list=[2, 3],
        pca_conditions=["normal", "type2"], svd_thresholds=[0.9, 0.95, 0.99], labels={"model": "tiny"},
    )  # fmt: skip
    assert set(similarity["condition"]) == {"normal", "type1", "type2"}
    assert set(similarity["layer"]) == {-1, 0, 1, 2, 3}
    assert projection.group_by("condition", "layer").len().height == 4
    assert projection.filter(pl.col("condition") == "type2").height == 2 * 2 * 7
    assert set(dimensions["layer"]) == {-1, 0, 1, 2, 3} and (dimensions["components"] <= 7).all()
    stored = json.loads((root / "states" / "meta.json").read_text())
    assert stored["last_layer"] == "normed" and stored["n_questions"] == 7


@pytest.mark.parametrize("positions", ["last", "prompt"])
def test_stacked_conditions_equal_separate_passes_on_every_family(loaded, positions):
    sentences = ["The cat sleeps on the sofa.", "駅はどこですか？", "Dov'è la stazione?"]
    neurons = {1: [0, 3, 8], loaded.facts.n_layers - 1: [2, 4]}
    edits = [NeuronEdit({}, 0.0, positions), NeuronEdit(neurons, 0.0, positions)]
    batch = tokenize(loaded.tokenizer, sentences)
    normal, edited = stacked_states(loaded, batch, edits, embedding=True, last_layer="normed")
    for ours, chosen in ((normal, None), (edited, neurons)):
        with torch.no_grad(), scaled_neurons(loaded.adapter, chosen or {}, 0.0, positions):
            output = decoder_forward(loaded.model, batch, output_hidden_states=True)
        expected = torch.stack([states[:, -1].float() for states in output.hidden_states]).numpy()
        np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max(), rtol=0)
    assert not np.allclose(normal[-1], edited[-1])


def test_workflow_reads_parallel_questions_then_the_test_split(tmp_path):
    # The rules' wiring (params, inputs, scripts) for both sources, up to the language_space output only.
    from tests.workflow_helpers import snakemake, tiny_config, write_config

    config = tiny_config(tmp_path)
    # raw: the state evaluation's centroids (the test source) hold the raw last layer until evaluate_states
    # reads runtime.last_layer; the normed reading is tested above, and the end-to-end run (test_workflow) has it.
    config["runtime"].update(dtype="float32", last_layer="raw")
    config["evaluation"]["language_space"].update(
        sentences="questions", max_questions=8, embedding=True, pca_layers="type2", pca_conditions=["normal", "type2"]
    )
    write_config(tmp_path, config)
    target = "results/tiny/evaluation/language_space.parquet"
    snakemake(tmp_path, target)
    meta = json.loads((tmp_path / "results/tiny/evaluation/language_states/meta.json").read_text())
    assert meta["dtype"] == "float32" and meta["n_questions"] == 8 and meta["layers"][0] == EMBEDDING_LAYER
    assert meta["conditions"]["ja"] == ["normal", "type1", "type2"]
    projection = pl.read_parquet(tmp_path / "results/tiny/evaluation/language_pca.parquet")
    assert set(projection["condition"]) == {"normal", "type2"} and set(projection["layer"]) == {2, 3}
    svd = pl.read_parquet(tmp_path / "results/tiny/evaluation/language_svd.parquet")
    assert set(svd["language"]) == {"en", "ja", "it"} and EMBEDDING_LAYER in set(svd["layer"])
    assert not (tmp_path / "results/tiny/evaluation/states").exists()  # questions need no state evaluation

    config["evaluation"]["language_space"].update(sentences="test", pca_layers="depths", pca_conditions=["normal"])
    write_config(tmp_path, config)
    result = snakemake(tmp_path, target)
    ran = set(re.findall(r"^(?:local)?rule (\w+):$", result.stdout + result.stderr, flags=re.MULTILINE))
    assert "language_states" not in ran and {"evaluate_states", "language_space"} <= ran
    similarity = pl.read_parquet(tmp_path / target)
    assert set(similarity["condition"]) == {"normal", "type1", "type2"}
    assert EMBEDDING_LAYER in set(similarity["layer"])
    dump_meta = json.loads((tmp_path / "results/tiny/activations/ja/test/target/meta.json").read_text())
    assert dump_meta["dtype"] == "float32"
