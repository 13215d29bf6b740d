import os
import sys
from pathlib import Path

from snakemake.utils import validate

# The workflow's own package lives in src/. This process reads its registries to plan the jobs, and
# every job's script imports it: src/ goes on this process's path and on PYTHONPATH, which each job
# inherits, in the venv, in a rule's conda env and on a cluster node alike (a cluster job parses this
# file again). A pip path in envs/*.yaml cannot do this: Snakemake copies an env file to
# .snakemake/conda/<hash>.yaml before conda creates it, so a path relative to envs/ no longer points
# at the repository (tests/test_envs.py). What runs is always this checkout's code, never a stale copy.
PACKAGE_SOURCE = str(Path(workflow.basedir) / "src")
sys.path.insert(0, PACKAGE_SOURCE)
# Set here, not read (so not an `envvars:` the user must provide); an inherited entry is kept once.
_INHERITED_PATH = [
    entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry
]
os.environ.update(
    PYTHONPATH=os.pathsep.join(dict.fromkeys([PACKAGE_SOURCE, *_INHERITED_PATH]))
)
# Registries and names only: these modules import nothing heavy at start-up.
from transfer_neurons.data.languages import language  # noqa: E402
from transfer_neurons.detection.detectors import score_detector  # noqa: E402
from transfer_neurons.evaluation.multiple_choice import TASK_PREFIX  # noqa: E402
from transfer_neurons.evaluation import finetune_sets  # noqa: E402
from transfer_neurons.evaluation.harness_tasks import (
    tasks_for,
    unknown_tasks,
)  # noqa: E402
from transfer_neurons.names import SPLITS, expand_groups, knn_metric  # noqa: E402
from transfer_neurons.reporting import analyses  # noqa: E402, F401  (the registrations)
from transfer_neurons.reporting.registry import (  # noqa: E402
    DETECTOR_SCOPE,
    FIGURES,
    MODEL_SCOPE,
    RESULTS,
    figures_of,
    table_inputs,
    tables_of,
)
from transfer_neurons.reporting.snakemake_report import (  # noqa: E402
    BROWSER_CATEGORY,
    PROJECT_REPORT_CATEGORY,
    figure_caption,
    figure_category,
    figure_labels,
    report_labels,
    table_category,
)

validate(config, schema="../config/schema.yaml")

# Cheap steps run where Snakemake itself runs, not as jobs of their own: on a cluster each would
# otherwise be a batch job that waits in the queue and starts Python anew for seconds of work.
# What reads activation dumps or loads a model stays a job with its resources.


localrules:
    all,
    prepare_corpus,
    conditions,
    detector_agreement,
    lape_overlap,
    figure_detection,
    figure_evaluation,
    summary_tables,
    report_html,
    neuron_browser,


MODELS = list(config["models"])
LANGUAGES = list(config["languages"])
PIVOT = config["pivot_language"]
DETECTORS = list(config["detection"]["detectors"])
EVALUATION = config["evaluation"]
# How every model job loads its model: runtime.device and runtime.dtype, one rule parameter
# (params.runtime) that scripts hand on as **runtime.
MODEL_RUNTIME = {
    "device": config["runtime"]["device"],
    "dtype": config["runtime"]["dtype"],
}
# The last layer's state as centroids and analyses read it: normed (the paper's) or raw.
LAST_LAYER = config["runtime"]["last_layer"]
LANGUAGE_SPACE = EVALUATION["language_space"]

for _code in [config["pivot_language"], *LANGUAGES]:
    language(_code)  # fails early, naming the known codes
for _name in DETECTORS:
    score_detector(_name)  # fails early, naming the registered detectors
if EVALUATION["detector"] not in DETECTORS:
    raise ValueError(
        f"config: evaluation.detector {EVALUATION['detector']!r} must be one of detection.detectors {DETECTORS}"
    )
_missing_sources = sorted(set(LANGUAGES) - set(config["corpus"]["sources"]))
if _missing_sources:
    raise ValueError(
        f"config: corpus.sources has no entry for languages {_missing_sources}"
    )
_template = EVALUATION["qa"]["template"]
_without_prompt = (
    [] if isinstance(_template, str) else sorted(set(LANGUAGES) - set(_template))
)
if _without_prompt:
    raise ValueError(
        f"config: evaluation.qa.template has no prompt for languages {_without_prompt}"
    )
if config["detection"]["top_n"] not in config["detection"]["top_n_sweep"]:
    raise ValueError("config: detection.top_n must be one of detection.top_n_sweep")
if LANGUAGE_SPACE["sentences"] == "test" and set(LANGUAGE_SPACE["pca_conditions"]) - {
    "normal"
}:
    raise ValueError(
        "config: evaluation.language_space.pca_conditions: deactivated conditions need sentences: questions "
        "(the test dumps hold normal states only)"
    )
if EVALUATION["specificity"]["english_pairs"] not in [None, *LANGUAGES]:
    raise ValueError(
        f"config: evaluation.specificity.english_pairs must be one of languages {LANGUAGES} or null"
    )

LM_EVAL = EVALUATION["lm_eval"]
HARNESS_CONDITIONS = (
    expand_groups(LM_EVAL["conditions"], LM_EVAL["seeds"] or EVALUATION["random_seeds"])
    if LM_EVAL["enabled"]
    else []
)
# One table per language and condition, whichever job writes it (evaluation.lm_eval.jobs).
HARNESS_RESULTS = "results/{model}/lm_eval/{lang}/{condition}.json"
HARNESS_TABLE = "results/{model}/lm_eval/{lang}/{condition}.parquet"
HARNESS_PER_CONDITION = LM_EVAL["jobs"] == "per_condition"
# A harness job: one language and condition, or one language with all of its conditions.
HARNESS_JOB = (
    "{model}/{lang}/{condition}" if HARNESS_PER_CONDITION else "{model}/{lang}"
)


def harness_outputs(pattern):
    """A harness job's files of ``pattern``: its condition's, or every condition's of its language."""
    if HARNESS_PER_CONDITION:
        return pattern
    return expand(pattern, condition=HARNESS_CONDITIONS, allow_missing=True)


def harness_job_conditions(wildcards):
    return [wildcards.condition] if HARNESS_PER_CONDITION else HARNESS_CONDITIONS


# Languages with at least one harness task (a per-language mapping may leave some out).
HARNESS_LANGUAGES = [lang for lang in LANGUAGES if tasks_for(LM_EVAL["tasks"], lang)]
if LM_EVAL["enabled"] and workflow.is_main_process:
    # Checked once, before any job: naming a task the harness lacks fails here, not hours later.
    _tasks = sorted(
        {task for lang in LANGUAGES for task in tasks_for(LM_EVAL["tasks"], lang)}
    )
    _unknown = unknown_tasks(_tasks, LM_EVAL["include_path"])
    if _unknown:
        raise ValueError(
            f"config: evaluation.lm_eval.tasks: unknown task {', '.join(map(repr, _unknown))}: neither a task, "
            f"group or tag of lm-evaluation-harness nor defined in evaluation.lm_eval.include_path "
            f"({LM_EVAL['include_path']!r})"
        )

# Fine-tuning only chosen neurons (evaluation.finetune): its languages (null: every one), the sets it
# trains, and the sets it evaluates (the untrained base model too). Names: evaluation/finetune_sets.py.
FINETUNE = EVALUATION["finetune"]
FINETUNE_LANGUAGES = (
    LANGUAGES if FINETUNE["languages"] is None else list(FINETUNE["languages"])
)
if set(FINETUNE_LANGUAGES) - set(LANGUAGES):
    raise ValueError(
        f"config: evaluation.finetune.languages {FINETUNE_LANGUAGES} must be among languages {LANGUAGES}"
    )
FINETUNE_TRAINED_SETS = list(FINETUNE["sets"]) if FINETUNE["enabled"] else []
FINETUNE_SETS = (
    [finetune_sets.BASE_SET, *FINETUNE_TRAINED_SETS] if FINETUNE["enabled"] else []
)

# Optional parts of the workflow that some figures and tables need.
PARTS = frozenset(
    (["lape"] if config["detection"]["lape"]["enabled"] else [])
    + (["choices"] if EVALUATION["choices"]["enabled"] else [])
    + (["amplification"] if EVALUATION["amplification"]["enabled"] else [])
    + (["logit_lens"] if EVALUATION["logit_lens"]["enabled"] else [])
    + (["lm_eval"] if EVALUATION["lm_eval"]["enabled"] else [])
    + (["patching"] if EVALUATION["patching"]["enabled"] else [])
    + (["finetune"] if FINETUNE["enabled"] else [])
)
DETECTOR_FIGURES = figures_of(DETECTOR_SCOPE, len(DETECTORS), PARTS)
EVALUATION_FIGURES = figures_of(MODEL_SCOPE, len(DETECTORS), PARTS)
SUMMARY_TABLES = tables_of(len(DETECTORS), PARTS)
FIGURE_SETTINGS = {
    "main_label": str(config["detection"]["top_n"]),
    "knn_metric": knn_metric(EVALUATION["states"]["knn_k"][0]),
    "resamples": EVALUATION["bootstrap_resamples"],
    "pivot": config["pivot_language"],
    "detector": EVALUATION["detector"],
}


wildcard_constraints:
    model="|".join(MODELS),
    lang="|".join(LANGUAGES),
    split="|".join(SPLITS),
    detector="|".join(DETECTORS),


# --- sources ----------------------------------------------------------------
def model_spec(wildcards):
    return config["models"][wildcards.model]


def corpus_source(wildcards):
    return config["corpus"]["sources"][wildcards.lang]


def corpus_source_file(wildcards):
    """The corpus file as an input (hub sources have none)."""
    source = corpus_source(wildcards)
    return [source["path"]] if "path" in source else []


def model_local_files(wildcards):
    """Local model files as inputs, so that replacing them reruns what follows."""
    spec = model_spec(wildcards)
    if "gguf" in spec:
        return [spec["gguf"]]
    if "path" in spec:
        return [f"{spec['path']}/config.json"]
    return []


def data_files():
    """Every local data file the run reads: corpora, the QA set and harness task files."""
    corpora = [
        source["path"]
        for source in config["corpus"]["sources"].values()
        if "path" in source
    ]
    return sorted(
        set(
            corpora
            + qa_source_file()
            + harness_task_files(None)
            + language_question_files(None)
        )
    )


def qa_source_file():
    source = EVALUATION["qa"]["source"]
    return [source["path"]] if "path" in source else []


def harness_task_files(wildcards):
    """The task YAML and data files of include_path, so that editing them reruns the harness jobs."""
    path = LM_EVAL["include_path"]
    return sorted(str(p) for p in Path(path).rglob("*") if p.is_file()) if path else []


def top_lists_by_detector(wildcards):
    """Every configured detector's top-N lists of one model, one input per detector."""
    return {
        name: expand(
            rules.score_neurons.output.top,
            model=wildcards.model,
            detector=name,
            lang=LANGUAGES,
        )
        for name in DETECTORS
    }


# --- evaluation -------------------------------------------------------------
LAPE_SETTINGS = {
    key: value for key, value in config["detection"]["lape"].items() if key != "enabled"
}


def condition_inputs(wildcards):
    """Write magnitudes (for magnitude-matched sets) and LAPE neurons, where configured."""
    inputs = {}
    if EVALUATION["magnitude_matched"]:
        inputs["magnitudes"] = rules.write_magnitudes.output.magnitudes.format(
            model=wildcards.model, lang=wildcards.lang
        )
    if config["detection"]["lape"]["enabled"]:
        inputs["lape"] = rules.lape.output.neurons.format(model=wildcards.model)
    return inputs


def top_list(wildcards):
    """The top-N lists of the detector whose neurons the interventions use."""
    return expand(
        rules.score_neurons.output.top,
        model=wildcards.model,
        detector=EVALUATION["detector"],
        lang=wildcards.lang,
    )


def intervention_settings(section, batch_size=None):
    """Factor, batching and (where a section has one mode) positions of one evaluation section."""
    positions = EVALUATION[section]["positions"]
    return {
        "factor": EVALUATION["factor"],
        "batch_size": batch_size or config["runtime"]["batch_size"],
        "max_batch_tokens": config["runtime"]["max_batch_tokens"],
        **({"positions": positions} if isinstance(positions, str) else {}),
    }


def choice_task_languages(lang):
    """The languages whose built-in multiple-choice task a language's conditions are scored on: its own and
    the pivot's (the same task with the same items, in English)."""
    return [lang, config["pivot_language"]]


def choice_task_files(wildcards):
    directory = EVALUATION["choices"]["task_dir"]
    return [
        f"{directory}/{TASK_PREFIX}_{code}.jsonl"
        for code in choice_task_languages(wildcards.lang)
    ]


def qa_template(lang):
    """The QA prompt of one language: the one template, or the language's entry of the map."""
    template = EVALUATION["qa"]["template"]
    return template if isinstance(template, str) else template[lang]


# --- language space ----------------------------------------------------------
QUESTION_STATES = LANGUAGE_SPACE["sentences"] == "questions"


def language_question_source():
    """The parallel questions of the language-space analyses: the QA set's, or the authors' pickle."""
    questions = LANGUAGE_SPACE["questions"]
    if questions == "qa":
        return {"qa": EVALUATION["qa"]["source"]}
    return {"authors": questions["authors"]}


def language_question_files(wildcards):
    """The local file the parallel questions come from (none from the hub, or with sentences: test)."""
    if not QUESTION_STATES:
        return []
    source = language_question_source()
    return qa_source_file() if "qa" in source else [source["authors"]]


def language_space_conditions():
    """The conditions the language-space analyses read (centroid similarity and PCA), normal first."""
    chosen = [*LANGUAGE_SPACE["conditions"], *LANGUAGE_SPACE["pca_conditions"]]
    return ["normal", *dict.fromkeys(name for name in chosen if name != "normal")]


def language_space_inputs(wildcards):
    """The states ``language_space`` reads: the language_states directory (questions), or the test
    dumps and the state evaluation's centroids (test)."""
    if QUESTION_STATES:
        return {
            "states": rules.language_states.output.states.format(model=wildcards.model)
        }
    tests = expand(
        "results/{model}/activations/{lang}/test", model=wildcards.model, lang=LANGUAGES
    )
    return {
        "english": tests[0],
        "tests": tests,
        "arrays": expand(
            rules.evaluate_states.output.arrays, model=wildcards.model, lang=LANGUAGES
        ),
    }


# --- results, figures and tables ---------------------------------------------
def result_pattern(name):
    """Where result ``name`` is written: the output of the rule its registry entry names."""
    entry = RESULTS[name]
    return getattr(getattr(rules, entry.rule).output, entry.output)


def result_languages(name):
    """The languages a result has files for: those with harness tasks, those fine-tuned, or all."""
    return {"harness": HARNESS_LANGUAGES, "finetune": FINETUNE_LANGUAGES}.get(
        name, LANGUAGES
    )


def result_files(names, model, detectors=DETECTORS):
    """The files of each result in ``names`` for one model, every language (and detector)."""
    return {
        name: expand(
            result_pattern(name),
            model=model,
            detector=detectors,
            lang=result_languages(name),
            split=SPLITS,
            condition=HARNESS_CONDITIONS,
            neuron_set=FINETUNE_SETS,
        )
        for name in names
    }


def figure_inputs(wildcards):
    """A figure's results (of its own detector, for detection figures) and the manifest."""
    detectors = [wildcards.detector] if "detector" in wildcards.keys() else DETECTORS
    inputs = result_files(
        FIGURES[wildcards.figure].result_names(), wildcards.model, detectors
    )
    return {
        **inputs,
        "manifest": rules.prepare_model.output.manifest.format(model=wildcards.model),
    }


def figure_results(wildcards):
    return list(FIGURES[wildcards.figure].result_names())


def summary_table_inputs(wildcards):
    return result_files(table_inputs(SUMMARY_TABLES), wildcards.model)


def model_figures(model):
    """Every figure of one model: detection figures per detector, then evaluation figures."""
    return [
        *expand(
            "reports/figures/{model}/{detector}/{figure}.png",
            model=model,
            detector=DETECTORS,
            figure=DETECTOR_FIGURES,
        ),
        *expand(
            "reports/figures/{model}/evaluation/{figure}.png",
            model=model,
            figure=EVALUATION_FIGURES,
        ),
    ]


def neuron_browsers():
    """Each model's neuron browser, where it is enabled."""
    if not EVALUATION["browser"]["enabled"]:
        return []
    return expand("reports/neurons/{model}", model=MODELS)


def all_targets():
    return (
        [fig for model in MODELS for fig in model_figures(model)]
        + neuron_browsers()
        + ["reports/report.html"]
    )
