"""The report: a JSON of every number and a Markdown page rendered from that JSON alone.

python -m benchmarks.report reports/benchmarks.json   # re-render the Markdown
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from benchmarks.timing import Timing


def jsonable(value):
    """Timings, dataclasses and numpy scalars as plain JSON values (dict keys as strings)."""
    if isinstance(value, Timing):
        return jsonable(value.as_dict())
    if dataclasses.is_dataclass(value):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# --- formatting -----------------------------------------------------------------------------


def number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def seconds(timing: dict) -> str:
    """``median (min–max) s`` of a timing dict."""
    return f"{number(timing['median'])} s ({number(timing['minimum'])}–{number(timing['maximum'])})"


def duration(value: float) -> str:
    """Seconds as s, min or h, whichever reads best."""
    if value < 120:
        return f"{number(value)} s"
    if value < 2 * 3600:
        return f"{number(value / 60)} min"
    return f"{number(value / 3600)} h"


def verdict(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


# --- sections ---------------------------------------------------------------------------------


def header_section(results: dict) -> list[str]:
    machine, settings = results["machine"], results["settings"]
    probes = results["speed_probe"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `{results['command']}` on {machine['date']}; written by the runner, do not edit by hand.",
        f"Times are median (min–max) over repeated runs: {settings['repeats_fast']} for fast cases, "
        f"{settings['repeats_slow']} for slow ones; alternatives are run alternately in each round.",
        "",
    ]
    loads = [probes["start"]["load_average_1min"], probes["end"]["load_average_1min"]]
    for case in results["case_conditions"].values():
        loads += [case["load_average_start"], case["load_average_end"]]
    busiest = max(loads)
    if busiest > machine["cpu_cores"] + 0.5:
        lines.append(
            f"**The machine was shared during this run** (load average up to {number(busiest)} on "
            f"{machine['cpu_cores']} cores): other processes competed for the CPU, so spreads are wide and "
            "absolute times pessimistic; ratios suffer less, as contenders alternate within each round, but are not "
            "immune: compare runs made on a quiet machine."
        )
    source = results["source"]
    if source["start"]["src_digest"] != source["end"]["src_digest"]:
        lines.append(
            f"**The package's source changed during this run** (src digest {source['start']['src_digest']} → "
            f"{source['end']['src_digest']}): cases may have measured different code; run again."
        )
    lines += ["", "## Machine", ""]
    rows = [[key, machine[key]] for key in machine if machine[key] is not None]
    rows.append(["source", f"commit {source['start']['commit']}, src digest {source['start']['src_digest']}"])
    facts = results["model"]["facts"]
    rows.append(
        [
            "model",
            f"{results['model']['name']}: {facts['family']}, {facts['n_layers']} layers, d_model {facts['d_model']}, "
            f"{facts['d_mlp']} neurons per layer",
        ]
    )
    rows.append(
        [
            "speed probe (start → end)",
            f"matmul {number(probes['start']['matmul_gflops'])} → {number(probes['end']['matmul_gflops'])} GFLOP/s; "
            f"memory copy {number(probes['start']['memory_copy_gbps'])} → "
            f"{number(probes['end']['memory_copy_gbps'])} GB/s; 1-min load average "
            f"{number(probes['start']['load_average_1min'])} → {number(probes['end']['load_average_1min'])} "
            f"on {machine['cpu_cores']} cores",
        ]
    )
    return [*lines, *table(["", ""], rows), ""]


def percent(share: float) -> str:
    """A share as a percentage: whole percents, two significant digits below 10 % (tiny quick-run shapes)."""
    return f"{share:.0%}" if share >= 0.1 else f"{share * 100:.2g}%"


def summary_section(cases: dict) -> list[str]:
    """One row per measure: against this machine's limit first, then against a baseline, and the target."""
    rows = []
    if "scoring" in cases:
        maths, end_to_end = cases["scoring"]["maths"], cases["scoring"]["end_to_end"]
        limit = maths["limit"]
        rows.append(
            [
                "1. scoring maths, same activations",
                f"{percent(limit['share_of_probe'])} of the matmul rate "
                f"({number(maths['timings']['project']['median'])} s; {number(limit['seconds_at_probe_rate'])} s "
                f"at the probe's {number(limit['probe_gflops'])} GFLOP/s)",
                f"{number(maths['speedups']['straightforward'])}× the straightforward baseline, "
                f"{number(maths['speedups']['authors'])}× the authors' loop",
                "≥ 100× the baseline",
                verdict(maths["met"]),
            ]
        )
        rows.append(
            [
                "1. scoring end to end (forward + scoring)",
                f"{end_to_end['limit']['forward_overhead']:.2f}× plain forward passes",
                f"{number(end_to_end['speedups']['straightforward'])}× the straightforward baseline, "
                f"{number(end_to_end['speedups']['authors'])}× the authors' loop",
                "≥ 5× the baseline",
                verdict(end_to_end["met"]),
            ]
        )
    if "overhead" in cases:
        overhead = cases["overhead"]
        rows.append(
            [
                "2. detection: dumps + centroids + scoring",
                f"{overhead['overhead']:.2f}× plain forward passes",
                "—",
                "≤ 1.25×",
                verdict(overhead["met"]),
            ]
        )
    if "batching" in cases:
        forward = cases["batching"]["forward"]["batch_sizes"]
        largest = max(forward, key=int)
        gain = forward[largest]["sentences_per_s"]["median"] / forward["1"]["sentences_per_s"]["median"]
        generation = cases["batching"]["generation"]
        rows.append(
            [
                f"3. forward passes, batch {largest} vs 1",
                f"{percent(forward[largest]['share_of_probe'])} of the matmul rate at batch {largest}, "
                f"{percent(forward['1']['share_of_probe'])} at batch 1",
                f"{number(gain)}× the sentences/s",
                "—",
                "—",
            ]
        )
        rows.append(
            [
                f"3. QA generation, batch {max(generation['batch_sizes'], key=int)} vs 1",
                "—",
                f"{number(generation['speedup'])}× the questions/s",
                "—",
                "—",
            ]
        )
    if "memory" in cases:
        memory = cases["memory"]
        sizes = [run["sentences"] for run in memory["runs"]]
        rows.append(
            [
                f"4. dump peak RSS, {min(sizes)} → {max(sizes)} sentences",
                "—",
                f"max/min {memory['peak_ratio']:.3f}",
                "≤ 1.10",
                verdict(memory["met"]),
            ]
        )
    if "scale" in cases:
        scale = cases["scale"]
        kind = "measured GPU passes" if scale["gpu_measured"] else "projection"
        rows.append(
            [
                f"5. paper-scale run on one GPU ({kind})",
                f"CPU scoring at {percent(scale['scoring_limit']['share_of_probe'])} of the matmul rate",
                f"{duration(scale['total']['project_s'])} vs {duration(scale['total']['straightforward_s'])} "
                f"({number(scale['speedup'])}×)",
                "—",
                "—",
            ]
        )
    if "evaluation" in cases:
        rows.append(evaluation_summary_row(cases["evaluation"]))
    return [
        "## Summary",
        "",
        "Each measure against this machine's limit first (the matmul rate its speed probe measures, or plain "
        "forward passes of the same sentences), then against a baseline; a ratio to a baseline says as much about "
        "the baseline (its BLAS, its numpy) as about the project.",
        "",
        *table(["Case", "Against the limit", "Against a baseline", "Target", "Met"], rows),
        "",
    ]


def scoring_section(case: dict) -> list[str]:
    maths, end_to_end = case["maths"], case["end_to_end"]
    shape = case["shape"]
    splits = end_to_end["splits"]
    sides = {
        "straightforward": "straightforward baseline (`naive.py`)",
        "authors": "authors' loop (`authors_procedure.py`)",
        "project": "this project (`score_layers`, batched)",
    }
    rows = [
        [
            label,
            seconds(maths["timings"][name]),
            seconds(end_to_end["timings"][name]),
            seconds(splits[name]["forward"]),
            seconds(splits[name]["scoring"]),
        ]
        for name, label in sides.items()
    ]
    rows.append(
        ["plain batched forward passes (no hooks)", "", seconds(end_to_end["timings"]["plain_forward"]), "", ""]
    )
    for name in ("straightforward", "authors"):
        rows.append(
            [
                f"speed-up over the {'baseline' if name == 'straightforward' else 'authors’ loop'}",
                f"{number(maths['speedups'][name])}×" + (" (target ≥ 100×)" if name == "straightforward" else ""),
                f"{number(end_to_end['speedups'][name])}×" + (" (target ≥ 5×)" if name == "straightforward" else ""),
                "",
                "",
            ]
        )
    limit = maths["limit"]
    maths_timed, end_to_end_timed = sentences_timed(maths, case["sentences"]), sentences_timed(end_to_end, None)
    return [
        "## 1. Neuron scoring",
        "",
        f"{case['sentences']} built-in {case['language']} sentences; every neuron of all {shape['layers']} layers "
        f"(d_model {shape['d_model']}, {shape['d_mlp']} neurons per layer) scored against both centroid types.",
        "",
        "Against the limit:",
        "",
        f"- Scoring maths: the one product no exact scorer avoids, [{case['sentences']} × {shape['d_model']}] × "
        f"[{shape['d_model']} × {shape['d_mlp']}] per layer, is {number(limit['necessary_gflop'])} GFLOP over the "
        f"{shape['layers']} layers: {number(limit['seconds_at_probe_rate'])} s at the {number(limit['probe_gflops'])} "
        f"GFLOP/s the speed probe's matmul reached in the same rounds (best of "
        f"{len(limit['probe_gflops_per_round'])}). The project took {seconds(maths['timings']['project'])}: "
        f"{number(limit['achieved_gflops'])} GFLOP/s, **{percent(limit['share_of_probe'])} of the matmul rate**.",
        f"- End to end: **{end_to_end['limit']['forward_overhead']:.2f}×** the plain batched forward passes of the "
        "same sentences in the same batches.",
        "",
        *table(["", "scoring maths", "end to end", "of which forward", "of which scoring"], rows),
        "",
        f"- The straightforward baseline adds every neuron's `a_i v_i` to the residual as a [{shape['d_mlp']} × "
        f"{shape['d_model']}] float32 matrix per sentence and layer and takes its cosine to both centroids; one "
        "batch-1 forward pass of the decoder per sentence.",
        "- The authors' loop is a faithful re-implementation of their published `compute_scores_for_tn_detection` "
        "(their code needs `baukit`, which is not on the package index): one run per centroid type, a batch-1 "
        "forward pass of the whole model with every hidden state per sentence, the write vectors read from the "
        "model per sentence and layer, the same matrix per sentence and layer, cosines by sklearn's "
        "`cosine_similarity`; it reads the project's captured states so that it scores the same quantity "
        "(see the module's docstring).",
        "- Scores agree: largest difference "
        + ", ".join(
            f"{maths['max_abs_diff'][name]:.1e} ({name}) on the same activations and "
            f"{end_to_end['max_abs_diff'][name]:.1e} ({name}) end to end"
            for name in ("straightforward", "authors")
        )
        + " (batch-1 against batched, left-padded passes); tolerance 1e-4.",
        f"- The references cost the same for every layer and sentence, so they were timed on layers "
        f"{', '.join(map(str, maths['reference_layers_timed']))} of {shape['layers']} and on fewer sentences, "
        "their times scaled by those shares: "
        + "; ".join(
            f"{label} on {maths_timed[name]} of the {case['sentences']} sentences for the maths and "
            f"{end_to_end_timed[name]} end to end"
            for name, label in (("straightforward", "the baseline"), ("authors", "the authors' loop"))
        )
        + ".",
        "",
    ]


def sentences_timed(comparison: dict, every: int | None) -> dict[str, int]:
    """Sentences each reference was timed on in one comparison.

    Reports written before the authors' loop had a stride of its own name one count for both
    references end to end (``reference_sentences_timed``), and timed the maths on all (``every``).
    """
    if "sentences_timed" in comparison:
        return comparison["sentences_timed"]
    count = comparison.get("reference_sentences_timed", every)
    return {"straightforward": count, "authors": count}


def overhead_section(case: dict) -> list[str]:
    splits = case["splits"]
    rows = [
        [
            "plain batched forward passes of the decoder (no hooks, nothing stored)",
            seconds(case["timings"]["plain_forward"]),
        ],
        ["detection: dumps + centroids + scoring", seconds(case["timings"]["detection"])],
        ["— activation dumps (both sides)", seconds(splits["dump"])],
        ["— centroids", seconds(splits["centroids"])],
        ["— centroid scoring, every layer", seconds(splits["scoring"])],
        ["ratio", f"{case['overhead']:.2f}× (target ≤ 1.25×)"],
    ]
    profile_rows = [
        [f"`{row['function']}`", row["calls"], number(row["self_s"]), number(row["cumulative_s"])]
        for row in case["profile"]
    ]
    return [
        "## 2. Detection overhead",
        "",
        f"{case['sentences']} sentences (English and L2 side of the pairs), batch {case['batch_size']}, "
        f"at most {case['max_batch_tokens']} padded tokens per batch.",
        "",
        *table(["", "time"], rows),
        "",
        f"Where detection spends its time (one extra run on {case['profile_sentences']} of the sentences under "
        "cProfile; self time excludes callees, model forward time is mostly inside `linear`):",
        "",
        *table(["function", "calls", "self s", "cumulative s"], profile_rows),
        "",
    ]


def batching_section(case: dict) -> list[str]:
    forward = case["forward"]
    forward_rows = [
        [
            batch_size,
            row["sentences"],
            seconds(row["timing"]),
            f"{number(row['sentences_per_s']['median'])} ({number(row['sentences_per_s']['minimum'])}–"
            f"{number(row['sentences_per_s']['maximum'])})",
            number(row["gflop"] / row["timing"]["median"]),
            percent(row["share_of_probe"]),
        ]
        for batch_size, row in forward["batch_sizes"].items()
    ]
    logits = case["logits"]
    last_position = logits["timings"].get("last_position")
    logits_lines = [
        f"What the workflow saves by reading hidden states from the decoder stack without the output projection, "
        f"batch {logits['batch_size']}, {logits['sentences']} sentences: a plain `model(**inputs)` call (logits at "
        f"every position) takes {seconds(logits['timings']['all_positions'])}"
        + (
            ""
            if last_position is None
            else f", last-position logits only (`logits_to_keep=1`) {seconds(last_position)}"
        )
        + f", the decoder only {seconds(logits['timings']['decoder_only'])}: {number(logits['speedup'])}× faster.",
        "",
    ]
    generation = case["generation"]
    generation_rows = [
        [
            batch_size,
            row["questions"],
            seconds(row["timing"]),
            f"{number(row['questions_per_s']['median'])} ({number(row['questions_per_s']['minimum'])}–"
            f"{number(row['questions_per_s']['maximum'])})",
        ]
        for batch_size, row in generation["batch_sizes"].items()
    ]
    identical = generation["identical_answers"]
    return [
        "## 3. Batching",
        "",
        "Forward passes of the decoder stack (as the workflow reads states, in its length-sorted batches; no hooks, "
        "no logits) over mixed-language built-in sentences; GFLOP/s counts the decoder's weight matrices over the "
        f"padded tokens, against the {number(forward['probe_gflops'])} GFLOP/s of the speed probe's matmul (best of "
        "one before and one after):",
        "",
        *table(["batch size", "sentences", "time", "sentences/s", "GFLOP/s", "share of the matmul rate"], forward_rows),
        "",
        *logits_lines,
        f"Greedy QA generation ({generation['max_new_tokens']} new tokens, left padding) on built-in MKQA questions:",
        "",
        *table(["batch size", "questions", "time", "questions/s"], generation_rows),
        "",
        f"Batched and batch-1 answers were identical for {identical['same']} of {identical['compared']} questions.",
        "",
    ]


def memory_section(case: dict) -> list[str]:
    rows = [
        [
            run["sentences"],
            number(run["peak_rss_mib"]),
            number(run["peak_anon_mib"]),
            number(run["peak_file_mib"]),
            number(run["rss_after_model_load_mib"]),
            number(run["dump_mib"]),
        ]
        for run in case["runs"]
    ]
    return [
        "## 4. Memory of the activation dump",
        "",
        f"One fresh process per size (`python -m benchmarks.dump_memory`), batch {case['batch_size']}, "
        f"at most {case['max_batch_tokens']} padded tokens per batch; sentences cycle the built-in corpus "
        "(English and four L2s). MiB:",
        "",
        *table(
            ["sentences", "peak RSS", "peak anonymous", "peak file-backed", "after model load", "dump on disk"], rows
        ),
        "",
        f"Peak RSS max/min: {case['peak_ratio']:.3f} (target ≤ 1.10: {verdict(case['met'])}); "
        f"anonymous part alone: {case['peak_anon_ratio']:.3f}.",
        "",
    ]


def scale_section(case: dict) -> list[str]:
    paper, gpu, measured = case["paper"], case["gpu_assumptions"], case["measured"]
    rows = [
        [row["stage"], duration(row["project_s"]), duration(row["straightforward_s"]), row["basis"]]
        for row in case["rows"]
    ]
    rows.append(
        [
            "**total**",
            f"**{duration(case['total']['project_s'])}**",
            f"**{duration(case['total']['straightforward_s'])}**",
            f"{number(case['speedup'])}×",
        ]
    )
    closed = measured["closed_form"]
    per_call, limit = closed["per_call"], case["scoring_limit"]
    label = "measured" if case["gpu_measured"] else "projected"
    title = f"## 5. Paper-scale run ({label} forward passes)"
    dims_note = "" if case["probe_dims_are_paper_dims"] else " **(quick run: probe dimensions are not the paper's)**"
    return [
        title,
        "",
        f"{paper['model']}: {paper['n_layers']} layers, d = {paper['d_model']}, {paper['d_mlp']} neurons per layer; "
        f"{paper['languages']} languages × {paper['pairs_per_language']} pairs, every layer scored against both "
        f"centroid types.{dims_note}",
        "",
        *table(["stage", "this project", "straightforward", "basis"], rows),
        "",
        "Assumptions:",
        "",
        f"- GPU: {gpu['name']}; forward passes at {number(gpu['effective_flops'] / 1e12)} TFLOP/s effective, "
        f"{number(gpu['memory_bandwidth'] / 1e12)} TB/s weight reads, at least {number(gpu['pass_overhead_s'] * 1e3)} "
        f"ms per pass (eager transformers); {number(gpu['device_to_host'] / 1e9)} GB/s device to host.",
        f"- Tokens per sentence as this model's tokenizer gives on the built-in corpus: "
        f"{number(measured['tokens']['real'])} real, {number(measured['tokens']['padded'])} with left padding in "
        "batches; Llama-3's tokenizer is assumed to give as many.",
        "- Scoring and storage run on the host CPU in both procedures (the paper's scripts score in numpy); their "
        "rows use this machine's CPU, measured at the paper's dimensions. A many-core host speeds up the BLAS "
        "matmul of the closed form, not the single-threaded numpy of either procedure.",
        "- The straightforward procedure is credited with one forward pass per target sentence for both centroid "
        "types (the paper runs Type-1 and Type-2 detection separately).",
        f"- Were the closed form run on the GPU ({number(gpu['scoring_flops'] / 1e12)} TFLOP/s float32 assumed), its "
        f"scoring row would take {duration(case['project_scoring_on_gpu_s'])} instead.",
        "",
        "Measured here:",
        "",
        f"- closed-form scoring of one layer, both centroid types, at paper dimensions: "
        f"{', '.join(f'{count} sentences {seconds(timing)}' for count, timing in closed['timings'].items())}; "
        f"{projection_text(per_call)};",
        f"- against the limit: one call's [{number(paper['pairs_per_language'])} × {paper['d_model']}] × "
        f"[{paper['d_model']} × {paper['d_mlp']}] product is {number(limit['necessary_gflop'])} GFLOP, "
        f"{number(limit['seconds_at_probe_rate'])} s at the {number(limit['probe_gflops'])} GFLOP/s the speed "
        f"probe's matmul reached around these measurements: the call runs at "
        f"**{percent(limit['share_of_probe'])} of the matmul rate**;",
        f"- straightforward scoring of one (sentence, layer): {seconds(measured['naive_pair'])};",
        f"- float16 dump writer {number(measured['storage']['write_bytes_per_s'] / 1e9)} GB/s of float32 states, "
        f"reader {number(measured['storage']['read_bytes_per_s'] / 1e9)} GB/s;",
        f"- batched forward passes of the model under test reached "
        f"{number(measured['this_machine_forward']['flops_per_s'] / 1e9)} GFLOP/s on this machine "
        f"({number(measured['this_machine_forward']['flops_per_token'] / 1e9)} GFLOP per token).",
        "",
    ]


def projection_text(fit: dict) -> str:
    """How one call's cost at the paper's size was obtained, with the fit's inputs."""
    target = f"{number(fit['target'])} sentences"
    terms = f"{number(fit['fixed_s'])} s + {number(fit['per_size_s'] * 1e3)} ms per sentence"
    if fit["basis"] == "measured":
        return (
            f"at {target}, the paper's count per call, the cost is the measurement itself, "
            f"{number(fit['projected_s'])} s (a fit with non-negative terms over every size gives {terms}, "
            f"{number(fit['fitted_s'])} s there)"
        )
    return (
        f"{fit['basis']} to {target}: a fit with non-negative terms gives {terms}, {number(fit['fitted_s'])} s, "
        f"held within what the largest size allows ({number(fit['bounds_s'][0])}–{number(fit['bounds_s'][1])} s): "
        f"**{number(fit['projected_s'])} s**, within a factor {number(fit['factor_bound'])} of the true cost "
        "(times the timing noise)"
    )


def evaluation_summary_row(case: dict) -> list[str]:
    """The summary's line for the evaluation jobs: the range of their shares of the limit, and start-up."""
    jobs = case["jobs"]
    shares = {name: job["share_of_probe"] for name, job in jobs.items()}
    lowest, highest = min(shares, key=shares.get), max(shares, key=shares.get)
    startups = [job["startup_seconds"] for job in jobs.values() if job["startup_seconds"] is not None]
    whole = [job["job_share_of_probe"] for job in jobs.values() if job["job_share_of_probe"] is not None]
    return [
        f"6. evaluation jobs ({len(jobs)} kinds), analysis and whole job",
        f"analysis at {percent(shares[lowest])} ({lowest}) to {percent(shares[highest])} ({highest}) of the matmul "
        "rate" + (f"; whole jobs {percent(min(whole))}–{percent(max(whole))}" if whole else ""),
        (f"start-up {number(min(startups))}–{number(max(startups))} s per job before its first forward pass"
         if startups else "—"),
        "—",
        "—",
    ]  # fmt: skip


def sizes_text(sizes: dict) -> str:
    """What a job runs, from its sizes dict: ``conditions 16, questions 60, ...``."""
    shown = {key: value for key, value in sizes.items() if key != "logit_positions_read"}
    return ", ".join(
        f"{key.replace('_', ' ')} {', '.join(map(str, value)) if isinstance(value, list) else value}"
        for key, value in shown.items()
    )


def evaluation_section(case: dict) -> list[str]:
    inputs, startup, jobs = case["inputs"], case["startup"], case["jobs"]
    source = inputs["conditions_from"]
    source_text = (
        "drawn neurons of the sizes the config gives (no finished run beside the manifest)"
        if source == "drawn"
        else f"the finished run's top-N lists, magnitudes and LAPE neurons (`{source}`)"
    )
    flops = case["flop_model"]
    rows = []
    for name, job in jobs.items():
        counts, gflop = job["counts"], job["gflop"]
        startup_cell = "—" if job["startup_seconds"] is None else f"{number(job['startup_seconds'])} s"
        whole = "—" if job["job_share_of_probe"] is None else percent(job["job_share_of_probe"])
        rows.append(
            [
                f"{name} (`{job['rule']}`)",
                sizes_text(job["sizes"]),
                startup_cell,
                seconds(job["timing"]),
                f"{number(job['forward_seconds']['median'])} s",
                f"{number(job['real_tokens_per_layer'])} ({percent(job['padding_share'])})",
                number(counts["logit_positions"]),
                f"{number(gflop['total'])} ({number(gflop['layers'])} + {number(gflop['attention'])} + "
                f"{number(gflop['output_projection'])})",
                f"{number(job['limit_seconds'])} s",
                f"**{percent(job['share_of_probe'])}**",
                whole,
            ]
        )
    phase_rows = []
    for name, measured in startup["jobs"].items():
        phases = measured["phases"]
        phase_rows.append(
            [name, *(f"{number(phases[phase]['median'])}" if phase in phases else "—" for phase in STARTUP_COLUMNS),
             f"**{seconds(phases['total'])}**"]
        )  # fmt: skip
    recorded = startup["recorded_loader"]
    loaders = startup["tokenizer_loaders"]
    loader_text = "; ".join(f"{LOADER_NAMES[loader]} {seconds(timing)}" for loader, timing in loaders.items())
    checks = [
        f"{name} {number(job['counts']['logit_positions'])} of {number(job['sizes']['logit_positions_read'])}"
        for name, job in jobs.items()
        if "logit_positions_read" in job["sizes"]
    ]
    unequal = [name for name, job in jobs.items() if not job["same_work_every_repeat"]]
    return [
        "## 6. Evaluation jobs against the limit",
        "",
        f"Each evaluation rule's analysis for `{inputs['language']}` at the config's sizes ({inputs['test_pairs']} "
        f"test pairs; {inputs['conditions']} conditions from {source_text}), called as its rule calls it on the "
        "loaded model (inputs read off the clock), against the FLOPs it must do at the "
        f"{number(case['probe_gflops'])} GFLOP/s of the speed probe's matmul (best of a probe before each job and one "
        "after): per real token of every pass it runs (stacked condition rows as run, cached prefixes once, padding "
        "left out) 2 × the computing layers' matmul parameters "
        f"({number(sum(flops['layer_flops_per_token']) / 1e6)} MFLOP per token through all layers) plus "
        f"{number(flops['attention_flops_per_key'])} FLOP per attended key (4 × query heads × head dimension; "
        "sliding windows applied), and "
        f"{number(flops['logit_flops_per_position'] / 1e6)} MFLOP (2 × d_model × vocabulary) per position whose "
        "logits are taken. Start-up is the median time from spawning a fresh process to the end of its model and "
        "tokenizer loads (the first forward pass comes next).",
        "",
        *table(
            [
                "job",
                "runs",
                "start-up",
                "analysis",
                "in forward calls",
                "tokens per layer (padding)",
                "logit positions",
                "GFLOP (layers + attention + logits)",
                "at the probe's rate",
                "share of the limit",
                "whole job's share",
            ],
            rows,
        ),  # fmt: skip
        "",
        f"Start-up per phase (median s over {startup['repeats']} fresh processes each; the model phase includes "
        "transformers' lazy imports of the model's code):",
        "",
        *table(["job", *STARTUP_COLUMNS.values(), "to the first pass"], phase_rows),
        "",
        "- Tokenizer alone, in a fresh process after importing torch, transformers and the tokenizer classes: "
        f"{loader_text}. The manifest "
        + (
            f"records the `{recorded}` loader, which every job uses."
            if recorded
            else "records no loader (written before `prepare_model` chose one), so every job loads `AutoTokenizer`."
        ),
        "- Logits taken against logits read (loss: every position predicting a real token; multiple choice: every "
        "continuation token's), per job: " + ("; ".join(checks) if checks else "none measured") + ".",
        "- Work counted in every repeat: "
        + ("the same." if not unequal else f"**differs between repeats** for {', '.join(unequal)}."),
        "",
    ]


# Start-up phases as ``benchmarks.job_startup`` marks them, with their column names.
STARTUP_COLUMNS = {
    "interpreter": "interpreter",
    "import_torch": "import torch",
    "import_transformers": "import transformers",
    "module": "analysis module",
    "model": "model",
    "tokenizer": "tokenizer",
}
LOADER_NAMES = {
    "auto": "`AutoTokenizer`",
    "fast": "fast (Rust `tokenizer.json`)",
    "sentencepiece": "SentencePiece (`tokenizer.model`)",
}


SECTIONS = {
    "scoring": scoring_section,
    "overhead": overhead_section,
    "batching": batching_section,
    "memory": memory_section,
    "scale": scale_section,
    "evaluation": evaluation_section,
}


def render(results: dict) -> str:
    """The Markdown report of a results dict (as written to JSON)."""
    lines = [*header_section(results), *summary_section(results["cases"])]
    for name, case in results["cases"].items():
        lines += SECTIONS[name](case)
    conditions = ", ".join(
        f"{name} {duration(case['seconds'])} (load {number(case['load_average_start'])} → "
        f"{number(case['load_average_end'])})"
        for name, case in results["case_conditions"].items()
    )
    lines.append(f"Run time of the whole benchmark: {duration(results['total_seconds'])}; per case: {conditions}.")
    return "\n".join(lines) + "\n"


def write_reports(results: dict, directory: Path) -> tuple[Path, Path]:
    """Write ``benchmarks.json`` and ``benchmarks.md`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    plain = jsonable(results)
    json_path, markdown_path = directory / "benchmarks.json", directory / "benchmarks.md"
    json_path.write_text(json.dumps(plain, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown_path.write_text(render(plain), encoding="utf-8")
    return json_path, markdown_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Re-render benchmarks.md from benchmarks.json.")
    parser.add_argument("json_path", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.json_path.read_text(encoding="utf-8"))
    args.json_path.with_suffix(".md").write_text(render(results), encoding="utf-8")


if __name__ == "__main__":
    main()
