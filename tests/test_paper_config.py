"""config/paper.yaml is valid and plans the paper's jobs with resources sized for 8B models.

The dry run goes through profiles/slurm, as a cluster run would, and must not need the
network: model, corpus and QA sources on the hub are only fetched by the jobs themselves.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import yaml
from snakemake.utils import validate

from tests.workflow_helpers import REPO, snakemake
from transfer_neurons.reporting import analyses  # noqa: F401  (the registrations)
from transfer_neurons.reporting.registry import DETECTOR_SCOPE, MODEL_SCOPE, figures_of

PAPER = REPO / "config" / "paper.yaml"
PROFILE = REPO / "profiles" / "slurm"
MODELS, LANGUAGES, DETECTORS, SPLITS = 3, 4, 2, 2
PARTS = frozenset({"lape", "lm_eval", "patching", "choices", "amplification", "logit_lens", "finetune"})
FINETUNE_SETS = 7  # paper.yaml trains every set; each is evaluated, and so is the untrained base
# MMLU-ProX exists in ja, ko and it; normal, Type-1, Type-2 and Type-1 random with 3 seeds.
HARNESS_LANGUAGES, HARNESS_CONDITIONS = 3, 1 + 2 + 3
PAPER_LANGUAGES = ["ja", "nl", "ko", "it"]
COMMIT = re.compile(r"[0-9a-f]{40}")

# Jobs per rule for 3 models x 4 languages x 2 detectors (both detectors: every figure).
EXPECTED_JOBS = {
    "prepare_model": MODELS,
    "prepare_corpus": LANGUAGES,
    "dump_pivot_activations": MODELS * SPLITS,  # English once per split, copied into every language's dump
    "dump_activations": MODELS * LANGUAGES * SPLITS,
    "centroids": MODELS * LANGUAGES,
    "score_neurons": MODELS * DETECTORS * LANGUAGES,
    "figure_detection": MODELS * DETECTORS * len(figures_of(DETECTOR_SCOPE, DETECTORS, PARTS)),
    "write_magnitudes": MODELS * LANGUAGES,
    "lape": MODELS,
    "lape_overlap": MODELS,
    "conditions": MODELS * LANGUAGES,
    "evaluate_states": MODELS * LANGUAGES,
    "evaluate_qa": MODELS * LANGUAGES,
    "evaluate_loss": MODELS * LANGUAGES,
    "evaluate_harness": MODELS * HARNESS_LANGUAGES * HARNESS_CONDITIONS,
    "evaluate_patching": MODELS * LANGUAGES,
    "evaluate_attention": MODELS * LANGUAGES,
    "evaluate_choices": MODELS * LANGUAGES,
    "evaluate_amplification": MODELS * LANGUAGES,
    "evaluate_logit_lens": MODELS * LANGUAGES,
    "finetune": MODELS * LANGUAGES * FINETUNE_SETS,
    "evaluate_finetuned": MODELS * LANGUAGES * (FINETUNE_SETS + 1),
    "neuron_tokens": MODELS * LANGUAGES,
    "neuron_lens": MODELS,
    "neuron_profiles": MODELS,
    "neuron_browser": MODELS,
    # paper.yaml reads the language space on parallel questions: one states job per model.
    "language_states": MODELS,
    "language_space": MODELS,
    "language_specificity": MODELS,
    "detector_agreement": MODELS,
    "figure_evaluation": MODELS * len(figures_of(MODEL_SCOPE, DETECTORS, PARTS)),
    "summary_tables": MODELS,
    "report_html": 1,
    "all": 1,
}
# Rules that run a model forward pass: one GPU each. Every other rule asks for none.
GPU_RULES = {
    "dump_pivot_activations", "dump_activations", "evaluate_states", "evaluate_qa", "evaluate_loss",
    "evaluate_harness", "evaluate_patching", "evaluate_attention", "language_states", "evaluate_choices",
    "evaluate_amplification", "evaluate_logit_lens", "finetune", "evaluate_finetuned", "neuron_tokens", "neuron_lens",
}  # fmt: skip
# Rules that hold a whole model in host memory (prepare_model reads it on the CPU).
MODEL_MEMORY_RULES = GPU_RULES | {"prepare_model", "centroids", "score_neurons", "write_magnitudes"}
BF16_8B_MB = 8e9 * 2 / 1e6  # the weights alone

# Any HTTP(S) request fails at once instead of reaching the hub.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
}


@pytest.fixture(scope="module")
def paper():
    return yaml.safe_load(PAPER.read_text())


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> str:
    """Output of the documented command, run in a directory laid out like the repository."""
    workdir = tmp_path_factory.mktemp("paper")
    (workdir / "config").symlink_to(REPO / "config")  # the Snakefile's own configfile
    (workdir / "data").symlink_to(REPO / "data")  # the built-in multiple-choice task files
    (workdir / "config.yaml").symlink_to(PAPER)  # what workflow_helpers passes as --configfile
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OFFLINE.items():
            patch.setenv(name, value)
        result = snakemake(workdir, "--dry-run", "--replace-workflow-config", "--profile", str(PROFILE))
    return result.stdout + result.stderr


def job_counts(text: str) -> dict[str, int]:
    table = text.rsplit("Job stats:", 1)[1].split("total", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


def job_resources(text: str) -> dict[str, list[dict[str, str]]]:
    """Rule -> the resources of each of its planned jobs."""
    resources = defaultdict(list)
    # A job's block is its indented lines; the next unindented line (a date, a rule) ends it.
    for rule, block in re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", text, flags=re.MULTILINE | re.DOTALL):
        line = re.search(r"^\s+resources: (.+)$", block, flags=re.MULTILINE)
        resources[rule].append(dict(item.split("=", 1) for item in line.group(1).split(", ")) if line else {})
    return resources


def test_paper_config_is_valid_against_the_schema(paper):
    validate(paper, str(REPO / "config" / "schema.yaml"))


def test_paper_config_pins_hub_models_and_data(paper):
    assert len(paper["models"]) == MODELS
    for spec in paper["models"].values():
        assert COMMIT.fullmatch(spec["hub"]["revision"]) or spec["hub"]["revision"] == "main"
    assert paper["languages"] == PAPER_LANGUAGES
    for lang in PAPER_LANGUAGES:
        hub = paper["corpus"]["sources"][lang]["hub"]
        assert hub["revision"], f"corpus source {lang} is not pinned"
    assert paper["corpus"]["max_train"] == paper["corpus"]["max_test"] == 1000
    assert "hub" in paper["evaluation"]["qa"]["source"]


def test_paper_config_follows_the_paper(paper):
    assert paper["detection"]["top_n"] == 1000
    assert paper["detection"]["type1_fraction"] == 0.625  # layers 0-19 of 32
    assert paper["resources"]["gpus"] == 1
    assert paper["resources"]["model_mem_mb"] >= BF16_8B_MB


def test_dry_run_plans_every_job_of_three_models_and_four_languages(dry_run):
    assert job_counts(dry_run) == EXPECTED_JOBS


def test_model_rules_ask_for_a_gpu_and_memory_for_8b(dry_run, paper):
    resources = job_resources(dry_run)
    memory = str(paper["resources"]["model_mem_mb"])
    for rule in GPU_RULES:
        assert {job.get("gpu") for job in resources[rule]} == {"1"}, rule
    for rule in MODEL_MEMORY_RULES:
        assert {job.get("mem_mb") for job in resources[rule]} == {memory}, rule
    for rule in set(resources) - GPU_RULES:
        assert {job.get("gpu", "0") for job in resources[rule]} == {"0"}, f"{rule} asks for a GPU"


def test_every_cluster_job_has_memory_and_runtime(dry_run):
    # The SLURM plugin submits without --mem or -t otherwise, and sites' defaults are small.
    for rule, jobs in job_resources(dry_run).items():
        if rule != "all":
            assert all("mem_mb" in job and "runtime" in job for job in jobs), rule


def test_paper_config_uses_the_authors_precision_last_layer_and_language_space(paper):
    assert paper["runtime"]["dtype"] == "float32"  # AutoModelForCausalLM.from_pretrained without a dtype
    assert paper["runtime"]["last_layer"] == "normed"  # their hidden_states[-1]
    space = paper["evaluation"]["language_space"]
    assert space["sentences"] == "questions" and space["embedding"] is True
    assert space["pca_layers"] == "type2" and "type2" in space["pca_conditions"]
    assert space["max_questions"] == 1000
    assert paper["evaluation"]["specificity"]["english_pairs"] == "nl"  # their en_mono_test
