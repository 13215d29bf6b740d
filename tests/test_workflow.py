"""End-to-end: the Snakefile on a tiny model, then incremental reruns."""

import json
import shutil

import polars as pl
import pytest
import yaml

from tests.workflow_helpers import planned_outputs, planned_rules, snakemake, tiny_config, write_config

pytestmark = pytest.mark.workflow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def finished_run_copy(finished_run, tmp_path):
    """A copy of the tiny run (file times and Snakemake's records kept) for a test that edits its
    corpus or config: other modules read the shared run at the same time on another worker."""
    return shutil.copytree(finished_run, tmp_path / "run", symlinks=True)


def test_workflow_writes_scores_top_lists_and_figures(finished_run):
    workdir = finished_run
    manifest = json.loads((workdir / "resources/models/tiny/manifest.json").read_text())
    assert manifest["facts"]["n_layers"] == 4
    for detector in ("centroid", "correlation"):
        for lang in ("ja", "it"):
            scores = pl.read_parquet(workdir / f"results/tiny/scores/{detector}/{lang}.parquet")
            assert scores.height == 2 * 4 * 48  # both types, every neuron of every layer
            assert set(scores["language"]) == {lang}
            candidates = scores.filter(pl.col("candidate"))
            assert sorted(candidates.filter(pl.col("neuron_type") == "type1")["layer"].unique()) == [0, 1]
            top = pl.read_parquet(workdir / f"results/tiny/neurons/{detector}/{lang}.parquet")
            five = top.filter(pl.col("top_n_label") == "5")
            assert five.group_by("neuron_type").len()["len"].to_list() == [5, 5]
            best = candidates.filter(pl.col("neuron_type") == "type1").sort("score", descending=True).head(5)
            assert five.filter(pl.col("neuron_type") == "type1")["neuron"].to_list() == best["neuron"].to_list()
        for figure in ("layer_distribution", "score_profile"):
            png = workdir / f"reports/figures/tiny/{detector}/{figure}.png"
            assert png.read_bytes()[:8] == PNG_SIGNATURE
            spec = json.loads(png.with_suffix("").with_suffix(".vl.json").read_text())
            assert "vega-lite" in spec["$schema"]


def test_workflow_evaluates_every_condition_and_writes_the_report(finished_run):
    workdir = finished_run
    conditions = pl.read_parquet(workdir / "results/tiny/conditions/ja.parquet")
    names = set(conditions["condition"])
    assert {"normal", "type1", "type2", "random_type1_s0", "random_type1_s1", "layer_matched_type2_s1",
            "magnitude_matched_type1_s0", "magnitude_matched_type2_s1", "lape"} <= names  # fmt: skip
    lape = pl.read_parquet(workdir / "results/tiny/lape/neurons.parquet")
    assert set(lape["language"]) <= {"en", "ja", "it"} and lape.height > 0
    losses = pl.read_parquet(workdir / "results/tiny/evaluation/loss/ja.parquet")
    assert set(losses["text_language"]) == {"en", "ja", "it"}
    assert {"normal", "type1", "magnitude_matched_type1_s0", "lape"} <= set(losses["condition"])
    assert losses.filter(pl.col("condition") == "normal").height == 3 * 6  # 6 sentences of each language
    harness = pl.read_parquet(workdir / "results/tiny/lm_eval/ja/random_type1_s1.parquet")
    assert set(harness["task"]) == {"tn_mc_ja", "tn_mc_en"} and set(harness["metric"]) == {"acc", "acc_norm"}
    assert json.loads((workdir / "results/tiny/lm_eval/ja/normal.json").read_text())["results"]["tn_mc_ja"]
    contrasts = pl.read_csv(workdir / "reports/tables/tiny/baseline_contrasts.csv")
    assert {"magnitude_matched", "random"} <= set(contrasts["baseline"])
    metrics = pl.read_parquet(workdir / "results/tiny/evaluation/states/ja.parquet")
    assert set(metrics["condition"]) == names
    assert metrics.filter(pl.col("condition") == "normal")["layer"].n_unique() == 4
    answers = pl.read_parquet(workdir / "results/tiny/evaluation/qa/ja.parquet")
    normal = answers.filter(pl.col("condition") == "normal")
    assert normal.group_by("positions").len().sort("positions").rows() == [("prompt", 10), ("prompt_last", 10)]
    assert answers["em"].is_between(0, 1).all() and (answers["em"] <= answers["f1"]).all()
    assert "layer_matched" not in set(answers["kind"])  # not in qa.kinds
    assert set(answers["answer_language_class"]) <= {"question_language", "english", "other", "unidentified"}
    choices = pl.read_parquet(workdir / "results/tiny/evaluation/choices/ja.parquet")
    assert set(choices["task_language"]) == {"ja", "en"} and set(choices["acc"]) <= {0.0, 1.0}
    assert choices.filter(pl.col("condition") == "normal").height == 2 * 4  # 4 items of each task
    sweep = pl.read_parquet(workdir / "results/tiny/evaluation/amplification/ja.parquet")
    assert set(sweep["measure"]) == {"qa_f1", "choice_accuracy", "knn_share"}
    assert set(sweep["factor"]) == {0.0, 1.0, 2.0}
    at_one = sweep.filter(pl.col("factor") == 1.0)
    normal_values = at_one.filter(pl.col("condition") == "normal").sort("measure", "unit")["value"]
    assert at_one.filter(pl.col("condition") == "type1").sort("measure", "unit")["value"].equals(normal_values)
    specificity = pl.read_parquet(workdir / "results/tiny/evaluation/specificity.parquet")
    assert specificity["eta_squared"].is_between(0, 1).all()
    agreement = pl.read_parquet(workdir / "results/tiny/evaluation/detector_agreement.parquet")
    assert set(agreement["reference"]) == {"centroid"} and set(agreement["detector"]) == {"correlation"}
    assert (agreement["shared"] <= agreement["n_reference"]).all()
    space = pl.read_parquet(workdir / "results/tiny/evaluation/language_space.parquet")
    assert set(space["language_a"]) == {"en", "ja", "it"}
    report = (workdir / "reports/report.html").read_text()
    for figure in ("qa_f1", "knn_alignment", "language_space", "specificity", "dose_response", "layer_distribution",
                   "loss_change", "baseline_contrasts", "lape_layers", "lape_overlap", "harness_scores",
                   "choice_accuracy", "answer_language", "amplification_qa", "qa_scatter"):  # fmt: skip
        assert f"{figure}.png" in report
    assert "This run" in report
    assert "neurons/tiny/index.html" in report  # the link to the neuron browser
    assert (workdir / "reports/neurons/tiny/index.html").is_file()


def test_one_harness_job_per_language_writes_what_one_job_per_condition_writes(finished_run, tmp_path, monkeypatch):
    from transfer_neurons.evaluation.harness import run_harness

    workdir = finished_run
    harness = yaml.safe_load((workdir / "config.yaml").read_text())["evaluation"]["lm_eval"]
    conditions = ["normal", "type1", "random_type1_s1"]
    outputs = {name: (tmp_path / f"{name}.json", tmp_path / f"{name}.parquet") for name in conditions}
    monkeypatch.chdir(workdir)  # the task YAMLs name their data relative to the run directory
    run_harness(
        workdir / "resources/models/tiny/manifest.json",
        workdir / "results/tiny/conditions/ja.parquet",
        outputs,
        ["tn_mc_ja", "tn_mc_en"],
        include_path=harness["include_path"], num_fewshot=harness["num_fewshot"], limit=harness["limit"],
        batch_size=harness["batch_size"], factor=0.0, positions=harness["positions"],
        bootstrap_iters=harness["bootstrap_iters"], device="cpu", labels={"model": "tiny", "language": "ja"},
    )  # fmt: skip
    for name in conditions:
        one_job = pl.read_parquet(workdir / f"results/tiny/lm_eval/ja/{name}.parquet")
        assert pl.read_parquet(outputs[name][1]).equals(one_job)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["evaluation"]["lm_eval"]["jobs"] = "per_language"
    planned_dir = tmp_path / "planned"
    write_config(planned_dir, tiny_config(planned_dir) | {"evaluation": config["evaluation"]})
    planned = planned_outputs(planned_dir, "results/tiny/lm_eval/ja/type1.parquet")
    harness_jobs = [output for output in planned if "lm_eval/ja/" in output]
    assert len(harness_jobs) == 1 and "lm_eval/ja/normal.parquet" in harness_jobs[0]  # every condition, one job


def test_second_dry_run_plans_nothing(finished_run):
    assert planned_outputs(finished_run, "all") == []


def test_changing_one_language_reruns_only_its_descendants(finished_run_copy):
    workdir = finished_run_copy
    corpus = workdir / yaml.safe_load((workdir / "config.yaml").read_text())["corpus"]["sources"]["ja"]["path"]
    with corpus.open("a", encoding="utf-8") as lines:
        lines.write("s9999\tThe rain stopped at noon.\t雨は正午にやみました。\n")
    outputs = planned_outputs(workdir, "all")
    assert any("results/corpus/ja.parquet" in output for output in outputs)
    assert any("activations/ja/train" in output for output in outputs)
    assert any("activations/en/train" in output for output in outputs)  # a new English sentence: dumped once
    # Italian's own data, dumps (their English rows copied before) and neurons stay; analyses that
    # read every language (LAPE's activation probabilities, the loss on every language's text)
    # rerun with ja's new text.
    own_it = ("results/corpus/it", "activations/it/", "scores/centroid/it", "neurons/centroid/it", "centroids/it")
    assert not [output for output in outputs if any(part in output for part in own_it)]


def test_changing_a_scoring_parameter_reruns_scoring_but_no_dump(finished_run_copy):
    workdir = finished_run_copy
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["detection"]["type1_fraction"] = 0.75
    write_config(workdir, config)
    rules = planned_rules(workdir, "all")
    assert "score_neurons" in rules
    assert "figure_detection" in rules
    assert not rules & {"dump_activations", "prepare_corpus", "prepare_model", "centroids"}


def test_a_single_figure_target_runs_alone(tmp_path):
    write_config(tmp_path, tiny_config(tmp_path))
    outputs = planned_outputs(tmp_path, "reports/figures/tiny/centroid/score_profile.png")
    assert "reports/figures/tiny/centroid/score_profile.png, reports/figures/tiny/centroid/score_profile.vl.json" in (
        outputs
    )
    assert not [output for output in outputs if "layer_distribution" in output or "/evaluation/" in output]


def test_malformed_corpus_fails_with_its_location_and_leaves_no_output(tmp_path):
    config = tiny_config(tmp_path)
    corpus = tmp_path / config["corpus"]["sources"]["ja"]["path"]
    corpus.write_text(corpus.read_text(encoding="utf-8") + "s9999\tAn orphan sentence.\t   \n", encoding="utf-8")
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "results/corpus/ja.parquet", check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs/prepare_corpus/ja.log").read_text()
    source = config["corpus"]["sources"]["ja"]["path"]  # errors name the file as the config does
    assert f"{source}: line 42: column 'ja': empty or whitespace-only sentence" in log
    assert not (tmp_path / "results/corpus/ja.parquet").exists()


def test_unknown_language_in_config_is_rejected_before_any_job(tmp_path):
    config = tiny_config(tmp_path)
    config["languages"] = ["ja", "xx"]
    config["corpus"]["sources"]["xx"] = config["corpus"]["sources"]["it"]
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert "unknown language code 'xx'" in result.stdout + result.stderr


def test_unknown_harness_task_is_rejected_before_any_job(tmp_path):
    config = tiny_config(tmp_path)
    config["evaluation"]["lm_eval"]["tasks"] = ["tn_mc_{lang}", "no_such_task_anywhere"]
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert "evaluation.lm_eval.tasks: unknown task 'no_such_task_anywhere'" in result.stdout + result.stderr
