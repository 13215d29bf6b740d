"""Run the benchmarks and write ``reports/benchmarks.md`` and ``reports/benchmarks.json``.

python -m benchmarks.run                     # every case on the default model (~10 min on 2 idle CPU cores)
python -m benchmarks.run --cases scoring,memory --repeats 3
python -m benchmarks.run --quick --model-manifest M --output-dir D   # smoke run on a tiny model
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from benchmarks.cases import CASES
from benchmarks.forward import plain_forward
from benchmarks.inputs import Bench, load_bench, sentence_pool
from benchmarks.machine import machine_info, source_state, speed_probe
from benchmarks.report import write_reports
from benchmarks.settings import DEFAULT_MANIFEST, DEFAULT_OUTPUT_DIR, REPO, full_settings, quick_settings

log = logging.getLogger("benchmarks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=None, help="runs per timed case (default: 5 fast, 3 slow)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one run each: a smoke test")
    parser.add_argument("--model-manifest", type=Path, default=DEFAULT_MANIFEST, help="a prepare_model manifest")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--language", default=None, help="L2 of the scoring and detection cases (default ja)")
    args = parser.parse_args(argv)
    unknown = set(args.cases.split(",")) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    if not args.model_manifest.is_file():
        parser.error(
            f"{args.model_manifest} not found; build the default model with "
            "`snakemake --cores 2 resources/models/gemma3-270m/manifest.json`"
        )
    return args


def warm_up(bench: Bench) -> None:
    """One batched forward pass off the clock: first calls pay for allocation and kernel selection."""
    sentences = sentence_pool()[: bench.settings.batch_size]
    plain_forward(bench.model, bench.tokenizer, sentences, bench.settings.batch_size)


def run_cases(bench: Bench, names: list[str]) -> tuple[dict, dict]:
    """Each case's results, and its wall-clock seconds with the load average around it, in registry order."""
    results, conditions = {}, {}
    for name in [name for name in CASES if name in names]:
        log.info("case %s ...", name)
        load_before, start = os.getloadavg()[0], time.perf_counter()
        results[name] = CASES[name](bench)
        seconds = time.perf_counter() - start
        # The 1-minute load average shows whether other processes shared the CPU during the case.
        conditions[name] = {
            "seconds": seconds,
            "load_average_start": load_before,
            "load_average_end": os.getloadavg()[0],
        }
        log.info("case %s done in %.0f s", name, seconds)
    return results, conditions


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    settings = (quick_settings() if args.quick else full_settings()).with_repeats(args.repeats)
    if args.language:
        settings = dataclasses.replace(settings, language=args.language)
    start = time.perf_counter()
    source_start = source_state(REPO)
    probe_start = speed_probe()
    bench = load_bench(args.model_manifest, args.device, settings)
    warm_up(bench)
    cases, case_conditions = run_cases(bench, args.cases.split(","))
    results = {
        "command": shlex.join(["python", "-m", "benchmarks.run", *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(bench.device),
        "speed_probe": {"start": probe_start, "end": speed_probe()},
        "source": {"start": source_start, "end": source_state(REPO)},
        "model": {
            "name": json.loads(args.model_manifest.read_text()).get("name", args.model_manifest.parent.name),
            "manifest": str(args.model_manifest),
            "facts": dataclasses.asdict(bench.adapter.facts),
        },
        "settings": dataclasses.asdict(settings),
        "cases": cases,
        "case_conditions": case_conditions,
        "total_seconds": time.perf_counter() - start,
    }
    json_path, markdown_path = write_reports(results, args.output_dir)
    log.info("wrote %s and %s", markdown_path, json_path)
    return results


if __name__ == "__main__":
    main()
