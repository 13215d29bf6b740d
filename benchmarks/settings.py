"""Sizes and repeat counts of one benchmark run: the full run and the quick smoke run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFEST = REPO / "resources" / "models" / "gemma3-270m" / "manifest.json"
DEFAULT_OUTPUT_DIR = REPO / "reports"
CONFIG_PATH = REPO / "config" / "config.yaml"
CORPUS_DIR = REPO / "data" / "corpus" / "builtin"


@dataclass(frozen=True)
class Settings:
    """Everything a case needs to know about how big and how often to measure."""

    language: str = "ja"  # the L2 of the scoring and detection cases
    scoring_sentences: int = 200
    batch_size: int = 32  # the workflow's runtime.batch_size
    max_batch_tokens: int | None = 4096  # the workflow's runtime.max_batch_tokens
    # Batch-1 runs cost the same per input whatever the others are, and they are the slow
    # ones, so they are timed on a subset: every ``batch1_stride``-th sentence of the
    # end-to-end scoring case (time scaled by the stride), and rates over fewer inputs.
    batch1_stride: int = 4
    # The references' scoring costs the same for every layer (same d_mlp x d_model matrix), so
    # they are timed on every ``naive_layer_stride``-th layer, the last included, and scaled.
    naive_layer_stride: int = 3
    # The authors' loop costs the same for every sentence too, and several times the
    # straightforward one (a run per centroid type, whole-model passes, sklearn cosines), so
    # it is timed on every ``authors_stride``-th sentence, in the maths and end to end alike.
    authors_stride: int = 8
    profile_pairs: int = 64  # the profiled detection run of the overhead case
    throughput_batch_sizes: tuple[int, ...] = (1, 8, 32, 64)
    throughput_sentences: int = 64
    throughput_batch1_sentences: int = 16
    qa_questions: int = 32
    qa_batch1_questions: int = 8
    qa_batch_size: int = 32
    qa_new_tokens: int = 16
    memory_sizes: tuple[int, ...] = (100, 400, 1600)
    # Paper-scale probe: the closed form is timed at these sentence counts (the largest is the
    # paper's 2000 pairs per language, so its cost is measured, not extrapolated; the smaller
    # ones show the fixed and per-sentence parts); the straightforward form at this many
    # (sentence, layer) pairs.
    scale_probe_sentences: tuple[int, ...] = (500, 1000, 2000)
    scale_probe_naive_pairs: int = 3
    scale_probe_dims: tuple[int, int] | None = None  # (d_model, d_mlp); None = paper dimensions
    # The evaluation case's start-up processes: these job kinds only (None: every enabled one).
    evaluation_startup_jobs: tuple[str, ...] | None = None
    repeats_fast: int = 5
    repeats_slow: int = 3
    repeats_memory: int = 1  # peak RSS is deterministic up to a few MB; one process per size
    quick: bool = False

    def with_repeats(self, repeats: int | None) -> Settings:
        """Use ``repeats`` for every timed case (the memory case keeps one run per size)."""
        if repeats is None:
            return self
        if repeats < 1:
            raise ValueError(f"--repeats must be at least 1, got {repeats}")
        return replace(self, repeats_fast=repeats, repeats_slow=repeats)


def workflow_config(config_path: Path = CONFIG_PATH) -> dict:
    """The workflow's config file, or {} without one."""
    if not config_path.is_file():
        return {}
    return yaml.safe_load(config_path.read_text()) or {}


def configured_runtime(config_path: Path = CONFIG_PATH) -> dict:
    """The workflow's ``runtime`` section (batch size, max tokens), or {} without a config."""
    return workflow_config(config_path).get("runtime", {})


def configured_qa(config_path: Path = CONFIG_PATH) -> dict:
    """The workflow's ``evaluation.qa`` section, its file source resolved against the repository root.

    The batching case asks the questions the workflow asks, in the workflow's prompt template.
    """
    qa = workflow_config(config_path).get("evaluation", {}).get("qa")
    if not qa or "template" not in qa or "source" not in qa:
        raise KeyError(f"{config_path} has no evaluation.qa section with a source and a template")
    source = dict(qa["source"])
    if "path" in source:
        source["path"] = str(REPO / source["path"])  # absolute paths are kept by the join
    return {**qa, "source": source}


def full_settings() -> Settings:
    """The default run, using the workflow's configured batch size and token limit."""
    runtime = configured_runtime()
    batch_size = int(runtime.get("batch_size", 32))
    return Settings(
        batch_size=batch_size, max_batch_tokens=runtime.get("max_batch_tokens", 4096), qa_batch_size=batch_size
    )


def quick_settings() -> Settings:
    """A smoke run that exercises every code path in seconds on a tiny model."""
    return Settings(
        scoring_sentences=8,
        batch1_stride=2,
        naive_layer_stride=2,
        authors_stride=2,
        profile_pairs=4,
        batch_size=4,
        max_batch_tokens=64,
        throughput_batch_sizes=(1, 4),
        throughput_sentences=8,
        throughput_batch1_sentences=4,
        qa_questions=4,
        qa_batch1_questions=2,
        qa_batch_size=4,
        qa_new_tokens=4,
        memory_sizes=(4, 8),
        scale_probe_sentences=(4, 8),
        scale_probe_naive_pairs=1,
        scale_probe_dims=(64, 224),
        # One job with the default attention and the attention job (eager): both ways a job loads.
        evaluation_startup_jobs=("states", "attention"),
        repeats_fast=1,
        repeats_slow=1,
        quick=True,
    )
