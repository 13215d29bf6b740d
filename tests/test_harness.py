"""lm-evaluation-harness under interventions: the built-in task, and log-likelihoods against references."""

import copy
import json
import os

import pytest
import torch

from tests.tiny import tiny_model, tiny_tokenizer
from tests.workflow_helpers import QA_SET, REPO
from transfer_neurons.data.qa import gold_texts, load_qa
from transfer_neurons.evaluation.harness import intervention_lm, tidy_results
from transfer_neurons.evaluation.harness_tasks import local_task_names, tasks_for
from transfer_neurons.evaluation.multiple_choice import is_wrong_for, write_task
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.loading import LoadedModel

TASK_DIR = REPO / "data" / "lm_eval"
BUILTIN = ["en", "ja", "nl", "ko", "it", "zh", "de", "es", "ru", "ar", "hi", "th", "vi"]
NEURONS = {0: [1, 5, 7], 2: [0, 10, 47], 3: list(range(0, 48, 3))}
LIMIT = 6


def test_committed_task_files_are_what_the_builder_writes(tmp_path, monkeypatch):
    records = load_qa({"path": str(QA_SET)}, BUILTIN)
    monkeypatch.chdir(tmp_path)  # the YAML names its data file from the run directory
    for lang in BUILTIN:
        data, definition = write_task(records, lang, TASK_DIR.relative_to(REPO))
        assert data.read_text(encoding="utf-8") == (REPO / data).read_text(encoding="utf-8"), lang
        assert definition.read_text(encoding="utf-8") == (REPO / definition).read_text(encoding="utf-8"), lang


@pytest.mark.parametrize("lang", BUILTIN)
def test_every_item_has_its_gold_answer_and_three_wrong_ones(lang):
    records = {str(record["example_id"]): record for record in load_qa({"path": str(QA_SET)}, BUILTIN)}
    key = "zh_cn" if lang == "zh" else lang
    for line in (TASK_DIR / f"tn_mc_{lang}.jsonl").read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        golds = gold_texts(records[item["id"]]["answers"][key])
        assert len(item["choices"]) == len(set(item["choices"])) == 4
        assert item["choices"][item["answer"]] in golds
        wrong = [choice for index, choice in enumerate(item["choices"]) if index != item["answer"]]
        assert all(is_wrong_for(choice, golds, lang) for choice in wrong)


def test_task_names_per_language():
    assert tasks_for(["tn_mc_{lang}", "tn_mc_en"], "ja") == ["tn_mc_ja", "tn_mc_en"]
    assert tasks_for({"ja": ["mmlu_prox_lite_ja"]}, "nl") == []
    assert {f"tn_mc_{lang}" for lang in BUILTIN} <= local_task_names(str(TASK_DIR))


# --- log-likelihoods through the harness ------------------------------------------------------


@pytest.fixture(scope="module")
def harness_run():
    """Run the built-in ja task on a tiny Llama; returns per-request log-likelihoods by setting."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        manager = TaskManager(include_path=str(TASK_DIR), include_defaults=False)

        def log_likelihoods(lm):
            results = lm_eval.simple_evaluate(model=lm, tasks=["tn_mc_ja"], task_manager=manager, limit=LIMIT,
                                              log_samples=True, bootstrap_iters=0)  # fmt: skip
            samples = sorted(results["samples"]["tn_mc_ja"], key=lambda sample: sample["doc_id"])
            values = [float(response[0][0]) for sample in samples for response in sample["resps"]]
            return torch.tensor(values, dtype=torch.float64), results

        tokenizer = tiny_tokenizer()
        model = tiny_model("llama")
        loaded = LoadedModel(model, tokenizer, adapter_for(model))
        zeroed = zeroed_copy(model)
        runs = {
            "plain": log_likelihoods(HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)),
            "zeroed": log_likelihoods(HFLM(pretrained=zeroed, tokenizer=tokenizer, batch_size=4)),
        }
        for positions in ("all", "prompt"):
            lm = intervention_lm(loaded, NEURONS, factor=0.0, positions=positions, batch_size=4)
            runs[positions] = log_likelihoods(lm)
        runs["normal"] = log_likelihoods(intervention_lm(loaded, {}, factor=0.0, positions="prompt", batch_size=4))
        return loaded, runs
    finally:
        os.chdir(cwd)


def test_scaling_every_position_equals_zeroed_down_projection_columns(harness_run):
    _, runs = harness_run
    torch.testing.assert_close(runs["all"][0], runs["zeroed"][0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(runs["all"][0], runs["plain"][0], atol=1e-4)  # the deactivation reached them


def test_normal_condition_equals_the_plain_harness(harness_run):
    # Also checks the vocabulary projection computed only where the harness reads.
    _, runs = harness_run
    torch.testing.assert_close(runs["normal"][0], runs["plain"][0], atol=1e-5, rtol=1e-5)


def test_prompt_mode_scales_the_context_but_not_the_answer(harness_run):
    loaded, runs = harness_run
    zeroed = zeroed_copy(loaded.model)
    items = [json.loads(line) for line in (TASK_DIR / "tn_mc_ja.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = []
    for item in items[:LIMIT]:
        context = f"Q: {item['question']}\nA:"
        for choice in item["choices"]:
            expected.append(reference_log_likelihood(loaded, zeroed, context, " " + choice))
    torch.testing.assert_close(runs["prompt"][0], torch.tensor(expected, dtype=torch.float64), atol=1e-4, rtol=1e-4)


def zeroed_copy(model):
    """The model with the chosen neurons' down-projection columns zeroed: their writes removed everywhere."""
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for layer, neurons in NEURONS.items():
            zeroed.model.layers[layer].mlp.down_proj.weight[:, neurons] = 0.0
    return zeroed


def reference_log_likelihood(loaded, zeroed, context: str, continuation: str) -> float:
    """One request alone, without hooks: the context read by the zeroed model (its neurons deactivated
    at the context's positions), the continuation by the plain model from that context's cache."""
    tokenizer = loaded.tokenizer
    whole = tokenizer(context + continuation)["input_ids"]
    n_context = len(tokenizer(context)["input_ids"])
    ids = torch.tensor([whole[:-1]])
    with torch.no_grad():
        prefix = zeroed(ids[:, :n_context], use_cache=True)
        rest = loaded.model(ids[:, n_context:], past_key_values=prefix.past_key_values)
    logits = torch.cat([prefix.logits, rest.logits], dim=1)[0]
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    return float(sum(log_probs[position - 1, whole[position]] for position in range(n_context, len(whole))))


def test_tidy_results_have_one_row_per_task_metric_and_filter(harness_run):
    _, runs = harness_run
    table = tidy_results(runs["plain"][1])
    assert set(table["metric"]) == {"acc", "acc_norm"} and set(table["task"]) == {"tn_mc_ja"}
    assert table["value"].is_between(0, 1).all() and (table["n_samples"] == LIMIT).all()
