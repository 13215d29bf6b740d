"""Case 6: each evaluation job kind against its limit, with its start-up beside it.

A job of the evaluation rules (rules/evaluation.smk) is a start-up (interpreter, imports, model and
tokenizer) and then the analysis. Both are measured:

* start-up, in fresh processes (``benchmarks.job_startup``), per job kind, phase by phase up to
  the first forward pass (the tokenizer with the loader the manifest records), and each tokenizer
  loader alone (``AutoTokenizer`` and the fast one);
* the analysis, here on the loaded model: the package's analysis function called with the
  settings the rule passes at the config's sizes (``config/config.yaml``), over a conditions table
  that ``build_conditions`` makes from the model's real top-N lists where a finished run of the
  workflow sits beside the manifest, else from drawn neurons of the same sizes. Reading and
  writing files is left out: the dumps and pairs it reads are made here first, off the clock.

Against the limit: the FLOPs the analysis must do (``benchmarks.job_flops``: the passes it really
runs, rows of stacked batches counted as run, cached prefixes once, padding left out, the output
projection only where logits are taken) over the speed probe's matmul rate (best of a probe before
each job and one at the end), as a share of the measured time.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.inputs import Bench
from benchmarks.job_flops import FlopModel, ForwardCounts, counted, limit_flops
from benchmarks.job_startup import JOB_STARTUP, TOKENIZER_LOADERS
from benchmarks.machine import matmul_gflops
from benchmarks.settings import REPO, workflow_config
from benchmarks.timing import Timing, time_repeated
from transfer_neurons.data.corpus import prepare_corpus
from transfer_neurons.data.dumps import Dump, dump_activations, kept_pairs
from transfer_neurons.data.qa import load_qa
from transfer_neurons.detection.ranking import candidate_layers, resolve_top_n
from transfer_neurons.evaluation.amplification import (
    AmplificationSettings,
    choice_values,
    knn_values,
    qa_values,
    sweep_runs,
)
from transfer_neurons.evaluation.attention import attention_conditions, evaluate_attention
from transfer_neurons.evaluation.choices import encoded_items, evaluate_choices, read_items
from transfer_neurons.evaluation.conditions import (
    BaselineSettings,
    InterventionSettings,
    build_conditions,
    condition_runs,
    select_conditions,
)
from transfer_neurons.evaluation.loss import evaluate_loss, held_out_sentences
from transfer_neurons.evaluation.multiple_choice import TASK_PREFIX
from transfer_neurons.evaluation.patching import evaluate_patching, patching_sets
from transfer_neurons.evaluation.qa import QASettings, evaluate_qa, prompt_template
from transfer_neurons.evaluation.states import evaluate_states
from transfer_neurons.model.batching import token_lengths
from transfer_neurons.model.loading import LoadedModel, load_model
from transfer_neurons.model.manifest import read_manifest
from transfer_neurons.names import NORMAL, PIVOT_SIDE

log = logging.getLogger("benchmarks.evaluation")

# The quick run's sizes: every job's code path on a tiny model in seconds (config keys, as dotted paths).
QUICK_SIZES = {
    "corpus.max_test": 16,
    "detection.top_n_sweep": [10],  # a tiny model's candidates hold too few neurons for N = 100 or 1000
    "evaluation.qa.limit": 4,
    "evaluation.qa.max_new_tokens": 2,
    "evaluation.loss.sentences": 4,
    "evaluation.choices.limit": 2,
    "evaluation.attention.sentences": 4,
    "evaluation.patching.max_pairs": 12,
    "evaluation.amplification.qa_limit": 2,
    "evaluation.amplification.choice_limit": 2,
}
# Jobs whose section can be switched off (``enabled: false``); the others always run.
OPTIONAL_JOBS = ("choices", "patching", "amplification")
STARTUP_PHASES = ("interpreter", "import_torch", "import_transformers", "module", "model", "tokenizer")


# --- the configuration the rules pass -------------------------------------------------------------
def with_sizes(config: dict, sizes: dict) -> dict:
    """A copy of ``config`` with each dotted key of ``sizes`` set."""
    changed = copy.deepcopy(config)
    for dotted, value in sizes.items():
        *parents, key = dotted.split(".")
        section = changed
        for parent in parents:
            section = section.setdefault(parent, {})
        section[key] = value
    return changed


def enabled_jobs(config: dict) -> list[str]:
    """The job kinds the config runs, in the order of rules/evaluation.smk."""
    evaluation = config["evaluation"]
    return [name for name in JOB_STARTUP if name not in OPTIONAL_JOBS or evaluation[name].get("enabled", True)]


def intervention_settings(config: dict, section: str, batch_size: int | None = None) -> InterventionSettings:
    """What ``intervention_settings`` in rules/common.smk passes: factor, batching, and the section's
    positions where it has one mode."""
    positions = config["evaluation"][section]["positions"]
    return InterventionSettings(
        factor=config["evaluation"]["factor"],
        batch_size=batch_size or config["runtime"]["batch_size"],
        max_batch_tokens=config["runtime"]["max_batch_tokens"],
        **({"positions": positions} if isinstance(positions, str) else {}),
    )


# --- the conditions table -------------------------------------------------------------------------
def finished_run(manifest: Path, model_name: str) -> Path | None:
    """``results/{model}`` of the workflow run whose ``resources/models/{model}/manifest.json`` this is."""
    manifest = Path(manifest).resolve()
    if manifest.parent.parent.name != "models" or manifest.parents[2].name != "resources":
        return None
    results = manifest.parents[3] / "results" / model_name
    return results if results.is_dir() else None


def run_lists(results: Path, config: dict, lang: str, facts) -> dict | None:
    """The finished run's top-N lists, write magnitudes and LAPE neurons of ``lang``, or None when it
    lacks one of them or they do not fit this model."""
    evaluation = config["evaluation"]
    paths = {"top": results / "neurons" / evaluation["detector"] / f"{lang}.parquet"}
    if evaluation["magnitude_matched"]:
        paths["magnitudes"] = results / "magnitudes" / f"{lang}.parquet"
    if config["detection"]["lape"]["enabled"]:
        paths["lape"] = results / "lape" / "neurons.parquet"
    if not all(path.is_file() for path in paths.values()):
        return None
    top = pl.read_parquet(paths["top"])
    labels = set(top["top_n_label"].unique().to_list())
    wanted = {str(label) for label in config["detection"]["top_n_sweep"]} | {str(config["detection"]["top_n"])}
    if not wanted <= labels or top["layer"].max() >= facts.n_layers or top["neuron"].max() >= facts.d_mlp:
        return None
    lists = {"top": top.filter(pl.col("top_n_label").is_in(list(wanted))), "source": str(results)}
    if "magnitudes" in paths:
        lists["magnitudes"] = pl.read_parquet(paths["magnitudes"])
    if "lape" in paths:
        lape = pl.read_parquet(paths["lape"])
        lists["lape"] = lape.filter(pl.col("language") == lang).sort("layer", "neuron")
    return lists


def drawn_lists(config: dict, facts, seed: int = 0) -> dict:
    """Top-N lists, magnitudes and a LAPE set of drawn neurons, of the sizes the config gives this model.

    Each type's lists are prefixes of one random order of its candidates (as real top-N lists nest);
    the LAPE set has ``lape.top_rate`` of all neurons shared among the languages (pivot included).
    """
    detection = config["detection"]
    rng = np.random.default_rng(seed)
    labels = list(dict.fromkeys([*detection["top_n_sweep"], detection["top_n"]]))
    frames = []
    for neuron_type, layers in candidate_layers(facts.n_layers, detection["type1_fraction"]).items():
        pool = np.array([(layer, neuron) for layer in layers for neuron in range(facts.d_mlp)])
        order = pool[rng.permutation(len(pool))]
        for label in labels:
            chosen = order[: resolve_top_n(label, len(pool))]
            frames.append(
                pl.DataFrame(
                    {
                        "top_n_label": str(label),
                        "neuron_type": neuron_type,
                        "layer": chosen[:, 0],
                        "neuron": chosen[:, 1],
                    },
                    schema={"top_n_label": pl.String, "neuron_type": pl.String, "layer": pl.Int32, "neuron": pl.Int32},
                )
            )
    every = np.array([(layer, neuron) for layer in range(facts.n_layers) for neuron in range(facts.d_mlp)])
    magnitudes = pl.DataFrame(
        {"layer": every[:, 0], "neuron": every[:, 1], "magnitude": rng.lognormal(size=len(every))},
        schema={"layer": pl.Int32, "neuron": pl.Int32, "magnitude": pl.Float64},
    )
    lists = {"top": pl.concat(frames), "magnitudes": magnitudes, "source": "drawn"}
    if detection["lape"]["enabled"]:
        size = max(1, round(detection["lape"]["top_rate"] * len(every) / (len(config["languages"]) + 1)))
        lape = every[np.sort(rng.choice(len(every), size=size, replace=False))]
        lists["lape"] = pl.DataFrame(
            {"layer": lape[:, 0], "neuron": lape[:, 1]}, schema={"layer": pl.Int32, "neuron": pl.Int32}
        )
    return lists


def conditions_table(config: dict, manifest: Path, lang: str, facts) -> tuple[pl.DataFrame, str]:
    """The conditions table the ``conditions`` rule would write for ``lang``, and where its lists came from."""
    evaluation = config["evaluation"]
    name = read_manifest(manifest).get("name", Path(manifest).parent.name)
    results = finished_run(manifest, name)
    lists = (run_lists(results, config, lang, facts) if results else None) or drawn_lists(config, facts)
    baselines = BaselineSettings(
        seeds=tuple(evaluation["random_seeds"]),
        sweep_seeds=tuple(evaluation["sweep_seeds"]),
        layer_matched=evaluation["layer_matched"],
        magnitude_matched=evaluation["magnitude_matched"],
        magnitude_pool=evaluation["magnitude_pool"],
    )
    table = build_conditions(
        lists["top"],
        candidate_layers(facts.n_layers, config["detection"]["type1_fraction"]),
        facts.d_mlp,
        main_label=str(config["detection"]["top_n"]),
        baselines=baselines,
        magnitudes=lists.get("magnitudes") if evaluation["magnitude_matched"] else None,
        lape_neurons=lists.get("lape"),
    )
    return table, lists["source"]


# --- the inputs the jobs read -----------------------------------------------------------------------
def test_pair_files(config: dict, languages: list[str], directory: Path) -> dict[str, Path]:
    """Each language's test pairs as the workflow splits them, written as ``{lang}.test.pairs.parquet``
    (every pair kept: ``runtime.max_tokens`` is not applied here)."""
    corpus, pivot = config["corpus"], config["pivot_language"]
    paths = {}
    for lang in languages:
        source = dict(corpus["sources"][lang])
        if "path" in source:
            source["path"] = str(REPO / source["path"])
        pairs, _ = prepare_corpus(
            source, pivot, lang, corpus["test_percent"], corpus.get("max_train"), corpus.get("max_test"),
            corpus.get("duplicates", "drop"),
        )  # fmt: skip
        paths[lang] = directory / f"{lang}.test.pairs.parquet"
        pairs.filter(pl.col("split") == "test").with_columns(pl.lit(True).alias("kept")).write_parquet(paths[lang])
    return paths


def qa_source(config: dict) -> dict:
    source = dict(config["evaluation"]["qa"]["source"])
    if "path" in source:
        source["path"] = str(REPO / source["path"])
    return source


def task_file(config: dict, code: str) -> Path:
    return REPO / config["evaluation"]["choices"]["task_dir"] / f"{TASK_PREFIX}_{code}.jsonl"


Job = Callable[[LoadedModel], object]


@dataclass
class JobInputs:
    """What every job builder reads: the config at the run's sizes, the language, its conditions table,
    its test pairs (and the pair files, by language), the English side's test dump, and the bench."""

    bench: Bench
    config: dict
    lang: str
    conditions: pl.DataFrame
    pair_files: dict[str, Path]
    pairs: pl.DataFrame
    pivot_dump: Dump

    @property
    def evaluation(self) -> dict:
        return self.config["evaluation"]

    @property
    def main_label(self) -> str:
        return str(self.config["detection"]["top_n"])

    @property
    def targets(self) -> list[str]:
        return self.pairs["target_text"].to_list()


def states_job(inputs: JobInputs) -> tuple[Job, dict]:
    """``run_state_evaluation`` once its inputs are read: every condition, last-token states, k-NN metrics."""
    settings = intervention_settings(inputs.config, "states")
    knn_ks, conditions, targets = inputs.evaluation["states"]["knn_k"], inputs.conditions, inputs.targets
    last_layer = inputs.config["runtime"]["last_layer"]

    def job(loaded: LoadedModel):
        return evaluate_states(loaded, inputs.pivot_dump, targets, conditions, settings, knn_ks, last_layer=last_layer)

    sizes = {
        "conditions": conditions["condition"].n_unique(),
        "sentences": len(targets),
        "positions": settings.positions,
    }
    return job, sizes


def qa_job(inputs: JobInputs) -> tuple[Job, dict]:
    """``run_qa_evaluation`` once its inputs are read: greedy answers under every run, MKQA scores."""
    section, lang = inputs.evaluation["qa"], inputs.lang
    qa = QASettings(
        template=prompt_template(section["template"], lang), max_new_tokens=section["max_new_tokens"],
        kinds=tuple(section["kinds"]), include_sweep=section["include_sweep"],
        positions=tuple(section["positions"]), limit=section.get("limit"), seeds=section["seeds"],
        stop=section["stop"], question_filter=section["question_filter"],
    )  # fmt: skip
    records = load_qa(qa_source(inputs.config), [lang], qa.limit, question_filter=qa.question_filter)
    table = select_conditions(inputs.conditions, qa.kinds, inputs.main_label, include_sweep=qa.include_sweep,
                              seeds=qa.seeds)  # fmt: skip
    settings = intervention_settings(inputs.config, "qa")

    def job(loaded: LoadedModel):
        return evaluate_qa(loaded, records, lang, table, settings, qa)

    sizes = {"conditions": table["condition"].n_unique(), "questions": len(records), "positions": list(qa.positions),
             "max_new_tokens": qa.max_new_tokens}  # fmt: skip
    return job, sizes


def loss_job(inputs: JobInputs) -> tuple[Job, dict]:
    """``run_loss_evaluation`` once its inputs are read: every sentence's loss under every condition."""
    section = inputs.evaluation["loss"]
    settings = intervention_settings(inputs.config, "loss", section["batch_size"])
    table = select_conditions(inputs.conditions, section["kinds"], inputs.main_label, seeds=section["seeds"])
    own = None if section["text"] == "every" else inputs.lang
    sentences = held_out_sentences(inputs.pair_files, inputs.config["pivot_language"], section["sentences"], own)

    def job(loaded: LoadedModel):
        return evaluate_loss(loaded, sentences, table, settings)

    runs = table["condition"].n_unique()
    sizes = {"conditions": runs, "sentences": sum(map(len, sentences.values())),
             "logit_positions_read": loss_positions(inputs.bench, sentences, runs)}  # fmt: skip
    return job, sizes


def choices_job(inputs: JobInputs) -> tuple[Job, dict]:
    """``run_choices`` once its inputs are read: every choice's log-likelihood under every condition."""
    section = inputs.evaluation["choices"]
    settings = intervention_settings(inputs.config, "choices")
    table = select_conditions(inputs.conditions, section["kinds"], inputs.main_label, seeds=section["seeds"])
    codes = (inputs.lang, inputs.config["pivot_language"])
    items = {code: read_items(task_file(inputs.config, code), section["limit"]) for code in codes}
    runs = condition_runs(table, settings)

    def job(loaded: LoadedModel):
        return evaluate_choices(loaded, items, runs, batch_size=settings.batch_size,
                                max_batch_tokens=settings.max_batch_tokens)  # fmt: skip

    sizes = {"conditions": len(runs), "items": sum(map(len, items.values())),
             "logit_positions_read": choice_positions(inputs.bench, items, len(runs))}  # fmt: skip
    return job, sizes


def attention_job(inputs: JobInputs) -> tuple[Job, dict]:
    """``run_attention`` once its inputs are read: the last token's attention under each condition."""
    settings = intervention_settings(inputs.config, "attention")
    seed = inputs.evaluation["random_seeds"][0]
    table = inputs.conditions.filter(pl.col("condition").is_in(attention_conditions(seed)))
    sentences = inputs.targets[: inputs.evaluation["attention"]["sentences"]]

    def job(loaded: LoadedModel):
        return evaluate_attention(loaded, sentences, table, settings)

    return job, {"conditions": table["condition"].n_unique(), "sentences": len(sentences)}


def patching_job(inputs: JobInputs) -> tuple[Job, dict]:
    """``run_patching`` once its inputs are read: both neuron sets' patched runs and their tables."""
    evaluation = inputs.evaluation
    section = evaluation["patching"]
    pairs = inputs.pairs.head(section["max_pairs"]) if section["max_pairs"] else inputs.pairs
    sets = patching_sets(inputs.conditions, section["control_seed"])
    # A stand-in for the training mean the rule reads from the train dump: the values do not change the work.
    means = inputs.pivot_dump.all_layers("neuron_activations").mean(axis=1)
    runtime = inputs.config["runtime"]

    def job(loaded: LoadedModel):
        return evaluate_patching(loaded, pairs, sets, means, factor=evaluation["factor"],
                                 max_batch_tokens=runtime["max_batch_tokens"], k=evaluation["states"]["knn_k"][0],
                                 last_layer=runtime["last_layer"])  # fmt: skip

    return job, {"neuron_sets": len(sets), "pairs": pairs.height}


def amplification_job(inputs: JobInputs) -> tuple[Job, dict]:
    """``run_amplification`` once its inputs are read: QA, multiple choice and k-NN per set and factor."""
    evaluation, runtime, lang = inputs.evaluation, inputs.config["runtime"], inputs.lang
    section, qa = evaluation["amplification"], evaluation["qa"]
    settings = AmplificationSettings(
        factors=tuple(section["factors"]), kinds=tuple(section["kinds"]), seeds=section["seeds"],
        positions=section["positions"], qa_template=prompt_template(qa["template"], lang),
        qa_max_new_tokens=qa["max_new_tokens"], qa_stop=qa["stop"], question_filter=qa["question_filter"],
        qa_limit=section["qa_limit"], choice_limit=section["choice_limit"], knn_k=evaluation["states"]["knn_k"][0],
        batch_size=runtime["batch_size"], max_batch_tokens=runtime["max_batch_tokens"],
        last_layer=runtime["last_layer"],
    )  # fmt: skip
    table = select_conditions(inputs.conditions, (NORMAL, *settings.kinds), inputs.main_label, seeds=settings.seeds)
    runs = sweep_runs(table, settings.factors, settings.positions)
    records = load_qa(qa_source(inputs.config), [lang], settings.qa_limit, question_filter=settings.question_filter)
    items = read_items(task_file(inputs.config, lang), settings.choice_limit)
    targets = inputs.targets

    def job(loaded: LoadedModel):
        return (
            qa_values(loaded, records, lang, runs, settings),
            choice_values(loaded, items, runs, settings),
            knn_values(loaded, inputs.pivot_dump, targets, runs, settings),
        )

    return job, {"runs": len(runs), "questions": len(records), "items": len(items), "sentences": len(targets)}


# One builder per job kind, in the order of rules/evaluation.smk (the keys of ``JOB_STARTUP``).
JOB_BUILDERS = {
    "states": states_job,
    "qa": qa_job,
    "loss": loss_job,
    "choices": choices_job,
    "attention": attention_job,
    "patching": patching_job,
    "amplification": amplification_job,
}


def evaluation_jobs(bench: Bench, config: dict, lang: str, directory: Path) -> tuple[dict[str, Job], dict, dict]:
    """Per enabled job kind, the analysis as its rule runs it (a function of the loaded model); what
    each one runs (sizes); and facts about the inputs (where the conditions came from)."""
    runtime = config["runtime"]
    conditions, source = conditions_table(config, bench.manifest, lang, bench.adapter.facts)
    every_language = config["evaluation"]["loss"]["text"] == "every"
    pair_files = test_pair_files(config, config["languages"] if every_language else [lang], directory)
    pairs = kept_pairs(pair_files[lang])
    # The English side's test dump, which the state and amplification analyses read; made off the clock.
    dump_activations(bench.loaded, pairs["pivot_text"].to_list(), directory / PIVOT_SIDE,
                     batch_size=runtime["batch_size"], max_batch_tokens=runtime["max_batch_tokens"])  # fmt: skip
    inputs = JobInputs(bench, config, lang, conditions, pair_files, pairs, Dump(directory / PIVOT_SIDE))
    jobs, sizes = {}, {}
    for name in enabled_jobs(config):
        jobs[name], sizes[name] = JOB_BUILDERS[name](inputs)
    facts = {"language": lang, "conditions_from": source, "conditions": conditions["condition"].n_unique(),
             "test_pairs": pairs.height}  # fmt: skip
    return jobs, sizes, facts


def loss_positions(bench: Bench, sentences: dict[str, list[str]], runs: int) -> int:
    """The positions whose logits the loss reads: every token but each sentence's last, under every run."""
    return runs * sum(length - 1 for texts in sentences.values() for length in token_lengths(bench.tokenizer, texts))


def choice_positions(bench: Bench, items: dict[str, list[dict]], runs: int) -> int:
    """The positions whose logits multiple choice reads, per run: an item's context's last position once (it
    predicts the first token of every choice) and each later continuation token's predicting one."""
    encoded = [item for found in items.values() for item in encoded_items(bench.tokenizer, found)]
    return runs * sum(1 + sum(len(continuation) - 1 for continuation in item.continuations) for item in encoded)


# --- start-up in fresh processes ---------------------------------------------------------------------
def startup_marks(bench: Bench, flag: str, value: str) -> dict[str, float]:
    """Run ``benchmarks.job_startup`` with ``--job`` or ``--tokenizer``; its marks and the spawn time."""
    command = [sys.executable, "-m", "benchmarks.job_startup", "--manifest", str(bench.manifest), flag, value,
               "--device", bench.device_name]  # fmt: skip
    # The child imports ``benchmarks`` from the repository root, wherever the runner was started.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    spawned = time.time()
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{finished.stderr[-4000:]}")
    return {"spawned": spawned, **json.loads(finished.stdout.strip().splitlines()[-1])}


def job_phases(marks: dict[str, float]) -> dict[str, float]:
    """Seconds per start-up phase from one job's marks, and ``total``: from spawn to the first pass."""
    order = ["spawned", "started", "torch", "transformers", "module", "model", "tokenizer"]
    present = [mark for mark in order if mark in marks]
    steps = zip(STARTUP_PHASES[: len(present) - 1], present[:-1], present[1:], strict=True)
    phases = {phase: marks[end] - marks[start] for phase, start, end in steps}
    return {**phases, "total": marks[present[-1]] - marks["spawned"]}


def measure_startup(bench: Bench, jobs: list[str], repeats: int) -> dict:
    """Per job kind, each start-up phase's timing over ``repeats`` fresh processes, jobs alternating in
    each round; and each tokenizer loader alone."""
    manifest = read_manifest(bench.manifest)
    recorded = (manifest.get("tokenizer") or {}).get("loader")
    available = {
        "auto": True,
        "fast": (Path(manifest["location"]) / "tokenizer.json").is_file(),
        "sentencepiece": recorded == "sentencepiece",  # its added tokens are written only where it is chosen
    }
    loaders = [loader for loader in TOKENIZER_LOADERS if available[loader]]
    samples: dict[str, list[dict]] = {name: [] for name in jobs}
    loader_samples: dict[str, list[float]] = {loader: [] for loader in loaders}
    for _ in range(repeats):
        for name in jobs:
            samples[name].append(job_phases(startup_marks(bench, "--job", name)))
        for loader in loaders:
            marks = startup_marks(bench, "--tokenizer", loader)
            loader_samples[loader].append(marks["tokenizer"] - marks["imports"])
    return {
        "jobs": {
            name: {
                "rule": JOB_STARTUP[name].rule,
                "attn_implementation": JOB_STARTUP[name].attn_implementation,
                "phases": {phase: Timing.of([run[phase] for run in runs]) for phase in runs[0]},
            }
            for name, runs in samples.items()
        },
        # None: the manifest records no loader (written before it did), so load_model uses AutoTokenizer.
        "recorded_loader": recorded,
        "tokenizer_loaders": {loader: Timing.of(values) for loader, values in loader_samples.items()},
        "repeats": repeats,
    }


# --- the analyses, timed and counted -----------------------------------------------------------------
def job_result(timing: Timing, counts: list[ForwardCounts], flops: FlopModel, probe_gflops: float) -> dict:
    """One job's measures against the limit, from its timing and each repeat's counts."""
    first = counts[0]
    needed = limit_flops(first, flops)
    limit_seconds = needed["total"] / (probe_gflops * 1e9)
    real = sum(first.layer_tokens)
    return {
        "timing": timing,
        "forward_seconds": Timing.of([count.forward_seconds for count in counts]),
        "counts": first.as_dict(),
        "same_work_every_repeat": all(first.same_work(other) for other in counts[1:]),
        "gflop": {part: value / 1e9 for part, value in needed.items()},
        "real_tokens_per_layer": real / len(first.layer_tokens),
        "padding_share": 1 - real / first.padded_layer_tokens if first.padded_layer_tokens else 0.0,
        "limit_seconds": limit_seconds,
        "share_of_probe": limit_seconds / timing.median,
    }


def time_jobs(bench: Bench, jobs: dict[str, Job], repeats: int) -> tuple[dict[str, dict], float]:
    """Each job's analysis timed ``repeats`` times with its work counted; the best probe reading."""
    results, probes = {}, [matmul_gflops()]
    flops = FlopModel.of(bench.model, bench.adapter)
    timed = {}
    for name, job in jobs.items():
        loaded = bench.loaded
        if JOB_STARTUP[name].attn_implementation:
            # The job loads its own model (eager attention, to read attention weights); off the clock.
            loaded = load_model(bench.manifest, bench.device_name, JOB_STARTUP[name].attn_implementation)
        log.info("evaluation job %s ...", name)
        timing, calls = time_repeated(
            lambda job=job, loaded=loaded: counted(loaded.model, loaded.adapter, lambda: job(loaded)), repeats
        )
        timed[name] = (timing, [call.counts for call in calls])
        del loaded, calls
        gc.collect()
        probes.append(matmul_gflops())
    best = max(probes)
    for name, (timing, counts) in timed.items():
        results[name] = job_result(timing, counts, flops, best)
    return results, best


def with_startup(results: dict[str, dict], startup: dict) -> None:
    """Add each job's start-up (median to the first pass) and the whole job's share of the limit."""
    for name, result in results.items():
        measured = startup["jobs"].get(name)
        if measured is None:
            result["startup_seconds"] = result["job_share_of_probe"] = None
            continue
        result["startup_seconds"] = measured["phases"]["total"].median
        result["job_share_of_probe"] = result["limit_seconds"] / (result["startup_seconds"] + result["timing"].median)


def run(bench: Bench) -> dict:
    settings = bench.settings
    config = workflow_config()
    if settings.quick:
        config = with_sizes(config, QUICK_SIZES)
    lang = settings.language
    with tempfile.TemporaryDirectory(prefix="benchmark-evaluation-") as directory:
        jobs, sizes, inputs = evaluation_jobs(bench, config, lang, Path(directory))
        startup_jobs = [name for name in jobs if settings.evaluation_startup_jobs is None
                        or name in settings.evaluation_startup_jobs]  # fmt: skip
        startup = measure_startup(bench, startup_jobs, settings.repeats_slow)
        results, probe = time_jobs(bench, jobs, settings.repeats_slow)
    with_startup(results, startup)
    for name, result in results.items():
        result["rule"] = JOB_STARTUP[name].rule
        result["sizes"] = sizes[name]
    return {
        "inputs": inputs,
        "startup": startup,
        "jobs": results,
        "probe_gflops": probe,
        "flop_model": FlopModel.of(bench.model, bench.adapter),
    }
