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
from benchmarks.forward import decoder_flops_per_token
from benchmarks.job_flops import FlopModel, ForwardCounter, attention_windows, limit_flops
from benchmarks.report import render
from benchmarks.timing import Timing
from tests.tiny import save_tiny_model, tiny_model, tiny_tokenizer
from transfer_neurons.model.adapters import adapter_for
from transfer_neurons.model.batching import TokenizedBatch, decoder_forward, last_token_forward, prefix_cache, tokenize
from transfer_neurons.model.hooks import HookSession


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
        "## 6. Evaluation jobs against the limit",
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


def test_evaluation_case_times_every_job_against_its_limit(quick_run):
    evaluation = quick_run[1]["cases"]["evaluation"]
    jobs = evaluation["jobs"]
    assert list(jobs) == ["states", "qa", "loss", "choices", "attention", "patching", "amplification"]
    for name, job in jobs.items():
        assert job["timing"].median > 0 and job["limit_seconds"] > 0, name
        assert 0 < job["share_of_probe"], name
        assert job["gflop"]["layers"] > 0 and job["gflop"]["attention"] > 0, name
        assert job["same_work_every_repeat"], name
        assert 0 <= job["padding_share"] < 1, name
    # Logits only where an analysis reads them: none for the state readers, exactly the read ones where known.
    for name in ("states", "attention", "patching"):
        assert jobs[name]["counts"]["logit_positions"] == 0, name
    for name in ("qa", "loss", "choices", "amplification"):
        assert jobs[name]["counts"]["logit_positions"] > 0, name
    for name in ("loss", "choices"):
        assert jobs[name]["counts"]["logit_positions"] == jobs[name]["sizes"]["logit_positions_read"], name
    # QA: one position per generated step of every run's copy of every question.
    qa = jobs["qa"]["sizes"]
    runs = 1 + (qa["conditions"] - 1) * len(qa["positions"])  # the normal run once
    assert jobs["qa"]["counts"]["logit_positions"] == runs * qa["questions"] * qa["max_new_tokens"]
    startup = evaluation["startup"]
    assert set(startup["jobs"]) == {"states", "attention"}  # the quick run's two ways of loading
    for measured in startup["jobs"].values():
        phases = measured["phases"]
        assert {"interpreter", "import_torch", "import_transformers", "module", "model", "tokenizer"} < set(phases)
        assert all(timing.median >= 0 for timing in phases.values())
        assert phases["total"].median >= phases["model"].median > 0
    assert startup["jobs"]["attention"]["attn_implementation"] == "eager"
    assert set(startup["tokenizer_loaders"]) == {"auto", "fast"}
    assert jobs["states"]["startup_seconds"] > 0 and jobs["qa"]["startup_seconds"] is None


@pytest.fixture(scope="module")
def counted_model():
    model = tiny_model("llama")
    tokenizer = tiny_tokenizer()
    batch = tokenize(tokenizer, ["The cat sleeps on the sofa.", "猫", "Where is the station?"])
    return model, adapter_for(model), batch


def causal_keys(batch: TokenizedBatch) -> int:
    """Sum over real tokens of the real keys each attends (itself and every real token before it)."""
    lengths = batch.attention_mask.sum(dim=1).tolist()
    return sum(length * (length + 1) // 2 for length in lengths)


def test_forward_counter_counts_real_tokens_keys_and_logits(counted_model):
    model, adapter, batch = counted_model
    n_layers = adapter.facts.n_layers
    real = int(batch.attention_mask.sum())
    with ForwardCounter(model, adapter) as counter, torch.no_grad():
        decoder_forward(model, batch)
    counts = counter.counts
    assert counts.layer_tokens == [real] * n_layers
    assert counts.layer_keys == [causal_keys(batch)] * n_layers
    assert counts.padded_layer_tokens == batch.input_ids.numel() * n_layers > real * n_layers  # the batch is padded
    assert counts.logit_positions == 0 and counts.decoder_calls == 1 and counts.forward_seconds > 0
    with ForwardCounter(model, adapter) as counter, torch.no_grad():
        model(**batch.model_inputs(model), logits_to_keep=1)
    assert counter.counts.logit_positions == batch.input_ids.shape[0]


def test_forward_counter_counts_a_cached_prefix_once(counted_model):
    model, adapter, batch = counted_model
    with ForwardCounter(model, adapter) as whole, torch.no_grad():
        decoder_forward(model, batch)
    with ForwardCounter(model, adapter) as split, torch.no_grad():
        cache = prefix_cache(model, batch)
        last_token_forward(model, batch, cache)
    assert split.counts.layer_tokens == whole.counts.layer_tokens
    assert split.counts.layer_keys == whole.counts.layer_keys
    assert split.counts.decoder_calls == 2


def test_forward_counter_leaves_out_replayed_layers(counted_model):
    model, adapter, batch = counted_model
    with torch.no_grad(), HookSession(adapter) as session:
        recorded = session.record_layers()
        decoder_forward(model, batch)
    with ForwardCounter(model, adapter) as counter, torch.no_grad(), HookSession(adapter) as session:
        session.replay_layers({0: recorded[0], 1: recorded[1]})
        decoder_forward(model, batch)
    real = int(batch.attention_mask.sum())
    assert counter.counts.layer_tokens == [0, 0] + [real] * (adapter.facts.n_layers - 2)


def test_flop_model_agrees_with_the_decoder_count_and_windows():
    model = tiny_model("llama")
    flops = FlopModel.of(model, adapter_for(model))
    assert sum(flops.layer_flops_per_token) == decoder_flops_per_token(model)
    assert flops.logit_flops_per_position == 2 * 32 * 320  # d_model x vocabulary
    assert flops.attention_flops_per_key == 4 * 32  # 4 heads x head dimension 8
    gemma = tiny_model("gemma3")
    windows = attention_windows(gemma, adapter_for(gemma).facts.n_layers)
    kinds = gemma.config.layer_types
    assert [window is None for window in windows] == [kind == "full_attention" for kind in kinds]


def test_limit_flops_adds_its_parts():
    model = tiny_model("llama")
    adapter = adapter_for(model)
    flops = FlopModel.of(model, adapter)
    with ForwardCounter(model, adapter) as counter:
        pass
    counter.counts.layer_tokens[0] = 10
    counter.counts.layer_keys[0] = 7
    counter.counts.logit_positions = 3
    parts = limit_flops(counter.counts, flops)
    assert parts["layers"] == 10 * flops.layer_flops_per_token[0]
    assert parts["attention"] == 7 * flops.attention_flops_per_key
    assert parts["output_projection"] == 3 * flops.logit_flops_per_position
    assert parts["total"] == parts["layers"] + parts["attention"] + parts["output_projection"]


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
