"""The native multiple-choice analysis equals lm-evaluation-harness on the built-in task, and stacked
conditions equal each condition alone."""

import os

import numpy as np
import pytest
import torch

from tests.tiny import tiny_model, tiny_tokenizer
from tests.workflow_helpers import REPO
from transfer_neurons.evaluation.choices import (
    encode_choice,
    encoded_items,
    item_scores,
    log_likelihoods_by_run,
    read_items,
)
from transfer_neurons.evaluation.harness import intervention_lm
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.hooks import NeuronEdit
from transfer_neurons.model.loading import LoadedModel

TASK_DIR = REPO / "data" / "lm_eval"
NEURONS = {0: [1, 5, 7], 2: [0, 10, 47], 3: list(range(0, 48, 3))}
LIMIT = 5


@pytest.fixture(scope="module")
def tiny_loaded():
    model = tiny_model("llama")
    return LoadedModel(model, tiny_tokenizer(), adapter_for(model))


def harness_samples(lm):
    """Per item of tn_mc_ja (first LIMIT): the harness's log-likelihoods and its acc and acc_norm."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
        results = lm_eval.simple_evaluate(model=lm, tasks=["tn_mc_ja"], task_manager=manager, limit=LIMIT,
                                          log_samples=True, bootstrap_iters=0)  # fmt: skip
    finally:
        os.chdir(cwd)
    return sorted(results["samples"]["tn_mc_ja"], key=lambda sample: sample["doc_id"])


@pytest.mark.parametrize(("condition", "neurons"), [("normal", {}), ("deactivated", NEURONS)])
def test_log_likelihoods_and_accuracies_equal_the_harness(tiny_loaded, condition, neurons):
    samples = harness_samples(intervention_lm(tiny_loaded, neurons, factor=0.0, positions="prompt", batch_size=4))
    items = read_items(TASK_DIR / "tn_mc_ja.jsonl", LIMIT)
    encoded = encoded_items(tiny_loaded.tokenizer, items)
    runs = {condition: NeuronEdit(neurons, 0.0, "prompt")}
    native = log_likelihoods_by_run(tiny_loaded, encoded, runs, batch_size=4, max_batch_tokens=None)[condition]
    theirs = [float(response[0][0]) for sample in samples for response in sample["resps"]]
    np.testing.assert_allclose(native, theirs, rtol=1e-5, atol=1e-5)
    scores = item_scores(items, native)
    assert scores["acc"].to_list() == [sample["acc"] for sample in samples]
    assert scores["acc_norm"].to_list() == [sample["acc_norm"] for sample in samples]


def test_conditions_stacked_as_rows_give_the_log_likelihoods_of_each_alone(loaded):
    items = [{"question": "Where is the station?", "choices": ["here", "there", "in Tokyo", "Rome"], "answer": 2},
             {"question": "猫は?", "choices": ["寝ています", "はい", "いいえ", "駅"], "answer": 0}]  # fmt: skip
    encoded = encoded_items(loaded.tokenizer, items)
    assert max(len(ids) for item in encoded for ids in item.continuations) > 1  # the continuation pass runs
    d_mlp = loaded.facts.d_mlp
    neuron_sets = {"normal": {}, "early": {0: list(range(0, d_mlp, 2))}, "late": {3: [1, 2, 3]}}
    for positions in ("prompt", "last", "all"):
        runs = {name: NeuronEdit(neurons, 0.5, positions) for name, neurons in neuron_sets.items()}
        stacked = log_likelihoods_by_run(loaded, encoded, runs, batch_size=8, max_batch_tokens=None)
        for name, edit in runs.items():
            alone = log_likelihoods_by_run(loaded, encoded, {name: edit}, batch_size=1, max_batch_tokens=None)[name]
            np.testing.assert_allclose(stacked[name], alone, rtol=1e-5, atol=1e-5)
        assert not np.allclose(stacked["early"], stacked["normal"], rtol=0, atol=1e-7)


def test_shared_contexts_give_the_log_likelihoods_of_whole_sequences(loaded):
    """The reference: each (question, choice) as one unpadded sequence, read whole by a plain forward pass."""
    items = [{"question": "Where is the station?", "choices": ["here", "there and back", "in Tokyo", "R"], "answer": 2}]
    encoded = encoded_items(loaded.tokenizer, items)
    native = log_likelihoods_by_run(loaded, encoded, {"normal": NeuronEdit()}, batch_size=4, max_batch_tokens=None)
    expected = []
    for continuation in encoded[0].continuations:
        ids = torch.tensor([encoded[0].context + continuation])
        with torch.no_grad():
            log_probs = torch.log_softmax(loaded.model(ids).logits[0].double(), dim=-1)
        start = len(encoded[0].context)
        expected.append(sum(float(log_probs[start + j - 1, token]) for j, token in enumerate(continuation)))
    np.testing.assert_allclose(native["normal"], expected, rtol=1e-4, atol=1e-4)


def test_the_context_keeps_no_trailing_space(tokenizer):
    context, continuation = encode_choice(tokenizer, "Q: x\nA: ", "Rome")
    assert context == tokenizer.encode("Q: x\nA:")
    assert context + continuation == tokenizer.encode("Q: x\nA: Rome")


def test_a_malformed_item_is_named(tmp_path):
    path = tmp_path / "task.jsonl"
    path.write_text(
        '{"question": "q", "choices": ["a", "b"], "answer": 0}\n{"question": "q", "choices": ["a"], "answer": 3}\n'
    )
    with pytest.raises(ValueError, match="task.jsonl: line 2"):
        read_items(path)
