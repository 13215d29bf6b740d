"""Case 5: the paper-scale run (Llama-3-8B, 4 languages x 2000 pairs) on one GPU, projected.

What runs on the CPU in either procedure (scoring, the dump's float16 storage) is measured
here at the paper's dimensions: the closed form at the paper's own sentence count per call
(``benchmarks.projection`` fits and bounds it from the sizes measured, so that a noisy
timing can neither turn it negative nor blow it up), the rest per unit of work and
multiplied out. Beside the projection, the scoring row is held against this machine's
limit: the FLOPs of its one necessary product per call at the speed probe's matmul rate. What runs
on the GPU (forward passes) is projected from FLOP and byte counts under the stated H100
assumptions; with CUDA present, those passes are measured instead on a randomly initialised
model of the paper's shape (timing does not depend on the weights' values).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.forward import model_flops_per_token, plain_forward, synchronize
from benchmarks.inputs import Bench, sentence_pool, token_counts
from benchmarks.machine import matmul_gflops
from benchmarks.naive import naive_centroid_scores
from benchmarks.projection import project
from benchmarks.timing import Timing, time_repeated
from transfer_neurons.data.storage import ScaledArrayWriter, read_scaled
from transfer_neurons.detection.scoring import centroid_scores


@dataclass(frozen=True)
class PaperScale:
    """The paper's detection run: model shape and corpus size."""

    model: str = "Llama-3-8B"
    n_layers: int = 32
    d_model: int = 4096
    d_mlp: int = 14336
    n_heads: int = 32
    n_kv_heads: int = 8
    vocab: int = 128256
    languages: int = 4
    pairs_per_language: int = 2000
    centroid_types: int = 2

    @property
    def layer_parameters(self) -> int:
        head_dim = self.d_model // self.n_heads
        attention = 2 * self.d_model * self.d_model + 2 * self.d_model * self.n_kv_heads * head_dim
        return attention + 3 * self.d_model * self.d_mlp  # gated MLP: gate, up, down

    @property
    def parameters(self) -> int:
        return self.n_layers * self.layer_parameters + 2 * self.vocab * self.d_model  # + embedding, LM head

    @property
    def flops_per_token(self) -> float:
        """Matmul FLOPs of one token's forward pass, logits included (attention scores are tiny here)."""
        return 2.0 * (self.n_layers * self.layer_parameters + self.vocab * self.d_model)

    @property
    def state_floats_per_sentence(self) -> int:
        """Floats a dump keeps per sentence: layer output, pre-MLP residual, activations, every layer."""
        return self.n_layers * (2 * self.d_model + self.d_mlp)


@dataclass(frozen=True)
class GpuAssumptions:
    """One H100 SXM 80 GB with bf16 weights, as the projection assumes it."""

    name: str = "H100 SXM 80GB, bf16"
    effective_flops: float = 300e12  # ~30 % of the 989 TFLOP/s dense bf16 peak for 512-token batches
    memory_bandwidth: float = 3.35e12  # bytes/s; every pass reads all weights once
    pass_overhead_s: float = 0.020  # eager transformers: kernel launches and Python per forward pass
    device_to_host: float = 20e9  # bytes/s for the captured states (PCIe, pageable memory)
    scoring_flops: float = 30e12  # if scoring ran on the GPU (float32, not tensor cores)


def forward_pass_seconds(paper: PaperScale, gpu: GpuAssumptions, tokens: float) -> float:
    """One forward pass over ``tokens`` tokens: the slowest of compute, weight reads and overhead."""
    weight_bytes = 2 * paper.parameters
    return max(
        tokens * paper.flops_per_token / gpu.effective_flops, weight_bytes / gpu.memory_bandwidth, gpu.pass_overhead_s
    )


# --- measurements on this machine -------------------------------------------------------


def probe_shape(paper: PaperScale, dims: tuple[int, int] | None) -> PaperScale:
    """The paper's shape, or smaller dimensions for the quick run."""
    if dims is None:
        return paper
    return replace(paper, d_model=dims[0], d_mlp=dims[1])


def random_layer(shape: PaperScale, n_sentences: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic scoring inputs of one layer at ``shape``: cost does not depend on the values."""
    rng = np.random.default_rng(seed)
    return {
        "residual": rng.standard_normal((n_sentences, shape.d_model), dtype=np.float32),
        "activations": rng.standard_normal((n_sentences, shape.d_mlp), dtype=np.float32),
        "write_vectors": rng.standard_normal((shape.d_mlp, shape.d_model), dtype=np.float32) * 0.01,
        "centroid": rng.standard_normal(shape.d_model, dtype=np.float32),
    }


def both_centroids(layer: dict[str, np.ndarray]) -> np.ndarray:
    """Two centroid types [T=2, d] from one random direction (values do not matter for cost)."""
    return np.stack([layer["centroid"], -layer["centroid"]])


def closed_form_cost(shape: PaperScale, sentence_counts: tuple[int, ...], repeats: int) -> dict:
    """Seconds per ``centroid_scores`` call (one layer, both centroid types) at each sentence count.

    Also that cost at the paper's sentence count per call (``pairs_per_language``), projected
    by ``benchmarks.projection.project`` from the medians (non-negative terms, bounded by the
    largest count), with the fit's inputs.
    """
    timings = {}
    for count in sentence_counts:
        layer = random_layer(shape, count)
        timings[count], _ = time_repeated(
            lambda layer=layer: centroid_scores(
                layer["residual"], layer["activations"], layer["write_vectors"], both_centroids(layer)
            ),
            repeats,
        )
        del layer  # the largest counts hold hundreds of MB
    counts = list(sentence_counts)
    return {
        "timings": {str(count): timing for count, timing in timings.items()},
        "per_call": project(counts, [timings[count].median for count in counts], shape.pairs_per_language),
    }


def naive_pair_cost(shape: PaperScale, n_pairs: int, repeats: int) -> Timing:
    """Seconds per (sentence, layer) of the straightforward scoring, both centroid types."""
    layer = random_layer(shape, n_pairs)
    centroids = both_centroids(layer)[:, None, :]  # [T=2, L=1, d]
    timing, _ = time_repeated(
        lambda: naive_centroid_scores(
            layer["residual"][None], layer["activations"][None], layer["write_vectors"][None], centroids
        ),
        repeats,
    )
    return timing.scaled(1 / n_pairs)


def storage_throughput(shape: PaperScale, batch_size: int, repeats: int) -> dict:
    """Bytes of float32 states per second that the dump's float16 writer stores, and reads back."""
    block = np.random.default_rng(0).standard_normal((shape.n_layers, batch_size, shape.d_mlp), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="benchmark-storage-") as directory:
        writer = ScaledArrayWriter(Path(directory), "probe", shape.n_layers, batch_size, shape.d_mlp)
        write, _ = time_repeated(lambda: writer.write(range(batch_size), block), repeats)
        writer.close()
        read, _ = time_repeated(lambda: read_scaled(Path(directory), "probe"), repeats)
    return {
        "write_bytes_per_s": block.nbytes / write.median,
        "read_bytes_per_s": block.nbytes / read.median,
        "write": write,
        "read": read,
    }


def this_machine_forward_rate(bench: Bench) -> dict:
    """FLOP/s that batched forward passes of the model under test reach here."""
    settings = bench.settings
    sentences = sentence_pool()[: settings.throughput_sentences]
    tokens = token_counts(bench.tokenizer, sentences, settings.batch_size, settings.max_batch_tokens)["padded"]
    timing, _ = time_repeated(
        # Every position's logits, so that the FLOPs counted (LM head included) are the FLOPs done.
        lambda: plain_forward(
            bench.model, bench.tokenizer, sentences, settings.batch_size, "all", settings.max_batch_tokens
        ),
        settings.repeats_fast,
    )
    flops_per_token = model_flops_per_token(bench.model)
    flops = flops_per_token * tokens * len(sentences)
    return {"timing": timing, "flops_per_s": flops / timing.median, "flops_per_token": flops_per_token}


# --- measurements on a GPU, when there is one --------------------------------------------


def random_model(shape: PaperScale, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A randomly initialised Llama of ``shape`` built directly on ``device``."""
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.d_model,
        intermediate_size=shape.d_mlp,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads,
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            return LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)


def measured_pass_seconds(model, batch_size: int, n_tokens: int, repeats: int) -> Timing:
    """Seconds of one forward pass of random token ids [batch_size, n_tokens]."""
    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch_size, n_tokens), device=device)

    def one_pass():
        with torch.no_grad():
            model(input_ids=ids)
        synchronize(device)

    one_pass()  # warm-up: kernel selection and allocator
    timing, _ = time_repeated(one_pass, repeats)
    return timing


def gpu_pass_measurements(
    shape: PaperScale, device: torch.device, dtype: torch.dtype, batch_size: int, tokens: dict[str, float], repeats: int
) -> dict[str, Timing]:
    """Batched and batch-1 forward passes of a random model of ``shape`` on ``device``."""
    model = random_model(shape, device, dtype)
    try:
        return {
            "batched": measured_pass_seconds(model, batch_size, max(1, round(tokens["padded"])), repeats),
            "batch1": measured_pass_seconds(model, 1, max(1, round(tokens["real"])), repeats),
        }
    finally:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


# --- the projection ------------------------------------------------------------------------


def projection_rows(paper: PaperScale, gpu: GpuAssumptions, measured: dict, batch_size: int) -> list[dict]:
    """Seconds per stage for this project and for the straightforward procedure, with the basis of each."""
    sentences = paper.languages * paper.pairs_per_language * 2  # English and L2 side of every pair
    targets = paper.languages * paper.pairs_per_language
    batches = sentences / batch_size
    tokens = measured["tokens"]
    passes = measured.get("gpu_passes")
    batched_pass = (
        passes["batched"].median if passes else forward_pass_seconds(paper, gpu, batch_size * tokens["padded"])
    )
    single_pass = passes["batch1"].median if passes else forward_pass_seconds(paper, gpu, tokens["real"])
    pass_basis = "measured on this GPU (random weights)" if passes else "projected: max(FLOPs, weight reads, overhead)"
    state_bytes = 4 * paper.state_floats_per_sentence  # float32 on the host
    scorings = paper.languages * paper.n_layers  # one call per layer scores both centroid types
    closed = measured["closed_form"]
    storage = measured["storage"]
    layer_output_bytes = 4 * paper.n_layers * paper.d_model * sentences  # centroids read every layer output
    scoring_read_bytes = state_bytes * targets  # score_layers reads the target dump
    return [
        {
            "stage": "forward passes",
            "project_s": batches * batched_pass,
            "straightforward_s": (sentences + targets) * single_pass,
            "basis": f"{pass_basis}; project: {sentences} sentences in batches of {batch_size}; straightforward: "
            f"{sentences} batch-1 passes for the centroids + {targets} for scoring",
        },
        {
            "stage": "captured states to host",
            "project_s": sentences * state_bytes / gpu.device_to_host,
            "straightforward_s": 0.0,
            "basis": "float32 last-token states of every layer over PCIe; the batch-1 copy hides in the pass overhead",
        },
        {
            "stage": "dump storage (float16)",
            "project_s": sentences * state_bytes / storage["write_bytes_per_s"],
            "straightforward_s": 0.0,
            "basis": f"{sentences * state_bytes / 2 / 1e9:.0f} GB of float16 written at the rate measured here "
            "(single-threaded numpy); the straightforward scripts keep states in memory",
        },
        {
            "stage": "centroids",
            "project_s": layer_output_bytes / storage["read_bytes_per_s"],
            "straightforward_s": 0.0,
            "basis": "reading every layer output back at the rate measured here; straightforward: summed during passes",
        },
        {
            "stage": "scoring (CPU)",
            "project_s": scorings * closed["per_call"]["projected_s"]
            + scoring_read_bytes / storage["read_bytes_per_s"],
            "straightforward_s": targets * paper.n_layers * measured["naive_pair"].median,
            "basis": f"measured here at d={paper.d_model}, n={paper.d_mlp}: project {scorings} closed-form calls "
            f"(one per layer and language, both centroid types; {closed['per_call']['basis']} at "
            f"{paper.pairs_per_language} sentences); straightforward "
            f"{targets * paper.n_layers} (sentence, layer) matrices",
        },
    ]


def scoring_limit(shape: PaperScale, per_call_s: float, probe_gflops: float) -> dict:
    """One closed-form call at the paper's size against the matmul rate: its [S, d] x [d, n] product's FLOPs."""
    flops = 2.0 * shape.pairs_per_language * shape.d_model * shape.d_mlp
    return {
        "necessary_gflop": flops / 1e9,
        "probe_gflops": probe_gflops,
        "seconds_at_probe_rate": flops / (probe_gflops * 1e9),
        "share_of_probe": flops / per_call_s / (probe_gflops * 1e9),
    }


def run(bench: Bench) -> dict:
    settings = bench.settings
    paper, gpu = PaperScale(), GpuAssumptions()
    shape = probe_shape(paper, settings.scale_probe_dims)
    tokens = token_counts(bench.tokenizer, sentence_pool(), settings.batch_size, settings.max_batch_tokens)
    probes = [matmul_gflops()]
    measured = {
        "tokens": tokens,
        "closed_form": closed_form_cost(shape, settings.scale_probe_sentences, settings.repeats_slow),
        "naive_pair": naive_pair_cost(shape, settings.scale_probe_naive_pairs, settings.repeats_slow),
        "storage": storage_throughput(shape, settings.batch_size, settings.repeats_fast),
        "this_machine_forward": this_machine_forward_rate(bench),
    }
    probes.append(matmul_gflops())
    if bench.device.type == "cuda" and not settings.quick:
        measured["gpu_passes"] = gpu_pass_measurements(
            paper, bench.device, torch.bfloat16, settings.batch_size, tokens, settings.repeats_fast
        )
    rows = projection_rows(shape, gpu, measured, settings.batch_size)
    scorings = shape.languages * shape.n_layers  # the [S, d] x [d, n] product is shared by both types
    matmul_flops = 2.0 * shape.pairs_per_language * shape.d_model * shape.d_mlp  # the [S, d] x [d, n] product
    totals = {key: sum(row[key] for row in rows) for key in ("project_s", "straightforward_s")}
    return {
        "paper": asdict(shape),
        "probe_dims_are_paper_dims": settings.scale_probe_dims is None,
        "gpu_assumptions": asdict(gpu),
        "measured": measured,
        # The best probe around the measurements: a busy phase can lower the share, never raise it.
        "scoring_limit": scoring_limit(shape, measured["closed_form"]["per_call"]["projected_s"], max(probes)),
        "rows": rows,
        "total": totals,
        "speedup": totals["straightforward_s"] / totals["project_s"],
        "gpu_measured": "gpu_passes" in measured,
        "project_scoring_on_gpu_s": scorings * matmul_flops / gpu.scoring_flops,
    }
