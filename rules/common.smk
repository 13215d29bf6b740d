import sys
from pathlib import Path

from snakemake.utils import validate

# The package lives in src/; putting it on the path lets the workflow run without installing it.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from transfer_neurons.outputs import FIGURE_INPUTS, REPORT_TABLES  # noqa: E402
from transfer_neurons.languages import language  # noqa: E402

validate(config, schema="../config/schema.yaml")

MODELS = list(config["models"])
LANGUAGES = list(config["languages"])
DETECTORS = list(config["detection"]["detectors"])
SPLITS = ["train", "test"]

for _code in [config["pivot_language"], *LANGUAGES]:
    language(_code)  # fails early, naming the known codes
_missing_sources = sorted(set(LANGUAGES) - set(config["corpus"]["sources"]))
if _missing_sources:
    raise ValueError(
        f"config: corpus.sources has no entry for languages {_missing_sources}"
    )
if config["detection"]["top_n"] not in config["detection"]["top_n_sweep"]:
    raise ValueError("config: detection.top_n must be one of detection.top_n_sweep")


wildcard_constraints:
    model="|".join(MODELS),
    lang="|".join(LANGUAGES),
    split="|".join(SPLITS),
    detector="|".join(DETECTORS),


def model_spec(wildcards):
    return config["models"][wildcards.model]


def corpus_source(wildcards):
    return config["corpus"]["sources"][wildcards.lang]


def corpus_source_file(wildcards):
    """The corpus file as a rule input (hub sources have none)."""
    source = corpus_source(wildcards)
    return [source["path"]] if "path" in source else []


def model_local_files(wildcards):
    """Local model files as rule inputs, so that replacing them reruns what follows."""
    spec = model_spec(wildcards)
    if "gguf" in spec:
        return [spec["gguf"]]
    if "path" in spec:
        return [f"{spec['path']}/config.json"]
    return []


def detection_figures():
    return expand(
        "reports/figures/{model}/{detector}/{figure}.png",
        model=MODELS,
        detector=DETECTORS,
        figure=["layer_distribution", "score_profile"],
    )


def all_targets():
    return [*detection_figures(), "reports/report.html"]


# --- evaluation -----------------------------------------------------------
EVALUATION = config["evaluation"]


def top_list(wildcards):
    return f"results/{wildcards.model}/neurons/{EVALUATION['detector']}/{wildcards.lang}.parquet"


def intervention_settings(section, batch_size=None):
    """Positions, factor and batching of one evaluation section, as a params dict."""
    return {
        "positions": EVALUATION[section]["positions"],
        "factor": EVALUATION["factor"],
        "batch_size": batch_size or config["runtime"]["batch_size"],
        "max_tokens": config["runtime"]["max_tokens"],
    }


# --- figures and report ---------------------------------------------------
FIGURE_SETTINGS = {
    "main_label": config["detection"]["top_n"],
    "knn_metric": f"mutual_knn_k{config['evaluation']['states']['knn_k'][0]}",
    "resamples": config["evaluation"]["bootstrap_resamples"],
}


def evaluation_figure_names():
    """Every evaluation figure; detector agreement only when both detectors run."""
    return [
        name
        for name in FIGURE_INPUTS
        if both_detectors() or name != "detector_agreement"
    ]


def result_patterns():
    """Evaluation outputs by input kind, taken from the rules that write them."""
    per_language = {
        "qa": rules.evaluate_qa.output.answers,
        "states": rules.evaluate_states.output.metrics,
        "attention": rules.evaluate_attention.output.shifts,
        "attention_example": rules.evaluate_attention.output.example,
    }
    per_model = {
        "language_space": rules.language_space.output.similarity,
        "language_pca": rules.language_space.output.pca,
        "specificity": rules.language_specificity.output.table,
        "agreement": rules.detector_agreement.output.table,
    }
    return per_language, per_model


def result_inputs(model, kinds):
    """Paths of the evaluation results of ``model`` for each kind in ``kinds``."""
    per_language, per_model = result_patterns()
    return {
        kind: expand(
            per_language.get(kind) or per_model[kind], model=model, lang=LANGUAGES
        )
        for kind in kinds
    }


def evaluation_figure_inputs(wildcards):
    return result_inputs(wildcards.model, FIGURE_INPUTS[wildcards.figure])


def evaluation_figures(model):
    return [
        f"reports/figures/{model}/evaluation/{name}.png"
        for name in evaluation_figure_names()
    ]


def both_detectors():
    return {"centroid", "correlation"} <= set(DETECTORS)


def report_table_names():
    names = list(REPORT_TABLES)
    return names if both_detectors() else [n for n in names if n != "agreement_summary"]


def model_results(wildcards):
    kinds = [
        "qa",
        "states",
        "specificity",
        "language_space",
        "language_pca",
        "attention",
    ]
    results = result_inputs(
        wildcards.model, kinds + (["agreement"] if both_detectors() else [])
    )
    results["neurons"] = expand(
        rules.score_neurons.output.top,
        model=wildcards.model,
        detector=DETECTORS,
        lang=LANGUAGES,
    )
    return results
