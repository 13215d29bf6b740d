"""Every benchmark case runs once on a tiny model, so that the benchmark code cannot rot.

No timing is asserted here, only structure and sign, so that the tests hold on a busy machine:
timings live in ``reports/benchmarks.md`` only.
"""

import json

import pytest
import torch

from benchmarks import run
from benchmarks.cases import CASES
from benchmarks.cases.scale import PaperScale, gpu_pass_measurements
from benchmarks.report import render
from benchmarks.timing import Timing
from tests.tiny import save_tiny_model


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-benchmark-model")
    model_dir = save_tiny_model("llama", directory / "weights")
    manifest = directory / "manifest.json"
    manifest.write_text(
        json.dumps({"name": "tiny", "source": "path", "location": str(model_dir), "trust_remote_code": False})
    )
    return manifest


@pytest.fixture(scope="module")
def quick_run(tiny_manifest, tmp_path_factory):
    output = tmp_path_factory.mktemp("benchmark-report")
    results = run.main(
        ["--quick", "--device", "cpu", "--model-manifest", str(tiny_manifest), "--output-dir", str(output)]
    )
    return output, results


def test_every_case_writes_json_and_markdown(quick_run):
    output, _ = quick_run
    written = json.loads((output / "benchmarks.json").read_text())
    assert list(written["cases"]) == list(CASES)
    assert {"cpu", "cpu_cores", "ram_gib", "torch", "transformers", "numpy", "device", "date"} <= set(
        written["machine"]
    )
    markdown = (output / "benchmarks.md").read_text()
    for heading in (
        "## Machine",
        "## Summary",
        "## 1. Neuron scoring",
        "## 2. Detection overhead",
        "## 3. Batching",
        "## 4. Memory",
        "## 5. Paper-scale run",
    ):
        assert heading in markdown
    assert render(written) == markdown  # the page is a function of the JSON alone


def test_scoring_case_reports_limits_ratios_and_agreement(quick_run):
    scoring = quick_run[1]["cases"]["scoring"]
    for comparison in ("maths", "end_to_end"):
        measures = scoring[comparison]
        assert {"timings", "limit", "speedups", "target", "met", "max_abs_diff"} <= set(measures)
        assert set(measures["speedups"]) == set(measures["max_abs_diff"]) == {"straightforward", "authors"}
        assert all(value > 0 for value in measures["speedups"].values())
        assert all(difference <= 1e-4 for difference in measures["max_abs_diff"].values())
    limit = scoring["maths"]["limit"]
    assert limit["necessary_gflop"] > 0 and limit["probe_gflops"] > 0 and limit["share_of_probe"] > 0
    assert scoring["end_to_end"]["limit"]["forward_overhead"] > 0
    splits = scoring["end_to_end"]["splits"]
    assert all(set(splits[side]) == {"forward", "scoring"} for side in ("project", "straightforward", "authors"))
    assert "plain_forward" in scoring["end_to_end"]["timings"]


def test_other_cases_report_their_measures(quick_run):
    cases = quick_run[1]["cases"]
    assert {"dump", "centroids", "scoring"} == set(cases["overhead"]["splits"])
    assert cases["overhead"]["overhead"] > 0
    assert cases["overhead"]["profile"]
    forward = cases["batching"]["forward"]["batch_sizes"]
    assert set(forward) == {"1", "4"}
    assert all(row["gflop"] > 0 and row["share_of_probe"] > 0 for row in forward.values())
    assert set(cases["batching"]["generation"]["batch_sizes"]) == {"1", "4"}
    memory_runs = cases["memory"]["runs"]
    assert [row["sentences"] for row in memory_runs] == [4, 8]
    assert all(row["peak_rss_mib"] > 0 for row in memory_runs)
    scale = cases["scale"]
    assert [row["stage"] for row in scale["rows"]][0] == "forward passes"
    assert all(row["project_s"] >= 0 and row["straightforward_s"] >= 0 for row in scale["rows"])
    assert scale["total"]["project_s"] > 0 and scale["total"]["straightforward_s"] > 0
    per_call = scale["measured"]["closed_form"]["per_call"]
    assert per_call["fixed_s"] >= 0 and per_call["per_size_s"] >= 0
    low, high = per_call["bounds_s"]
    assert 0 < low <= per_call["projected_s"] <= high
    assert scale["scoring_limit"]["share_of_probe"] > 0


def test_gpu_pass_measurement_runs_on_a_tiny_shape():
    shape = PaperScale(n_layers=2, d_model=32, d_mlp=48, n_heads=4, n_kv_heads=2, vocab=64)
    passes = gpu_pass_measurements(
        shape, torch.device("cpu"), torch.float32, batch_size=2, tokens={"real": 3.0, "padded": 4.0}, repeats=1
    )
    assert set(passes) == {"batched", "batch1"}
    assert all(isinstance(timing, Timing) for timing in passes.values())


def test_timing_summary_and_scaling():
    timing = Timing.of([3.0, 1.0, 2.0])
    assert (timing.median, timing.minimum, timing.maximum) == (2.0, 1.0, 3.0)
    assert timing.scaled(2).median == 4.0
    assert Timing.of([5.0]).q1 == 5.0
