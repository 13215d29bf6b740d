"""One evaluation job's start-up in a fresh process: what it does before its first forward pass.

    python -m benchmarks.job_startup --manifest M --job qa [--device auto]
    python -m benchmarks.job_startup --manifest M --tokenizer auto|fast|sentencepiece

Prints one JSON line of wall-clock marks (``time.time()``, comparable with the parent's), taken
in the order a job's script works: the interpreter is up (``started``, this module's first line),
``import torch``, ``import transformers``, the job's analysis module imported, the model loaded as
``load_model`` loads it (weights, eval mode, read into memory; with eager attention for the
attention job), and the tokenizer loaded with the loader the manifest records (``load_model``
loads the model first, then the tokenizer). ``--tokenizer`` times one loader alone instead, after
the imports (torch, transformers, its tokenizer classes): ``auto`` (``AutoTokenizer``), ``fast`` (the
Rust tokenizer of tokenizer.json) or ``sentencepiece`` (tokenizer.model, where the manifest records it).
"""

import time

STARTED = time.time()  # before any import but time's: the interpreter's own start-up ends here

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402


@dataclass(frozen=True)
class StartupSpec:
    """What one job kind does before its first pass: the module its script imports, and how it loads."""

    rule: str
    module: str
    attn_implementation: str | None = None
    with_tokenizer: bool = True


# The evaluation rules' start-up, by job kind (rules/evaluation.smk and each module's run_* function).
JOB_STARTUP = {
    "states": StartupSpec("evaluate_states", "transfer_neurons.evaluation.states"),
    "qa": StartupSpec("evaluate_qa", "transfer_neurons.evaluation.qa"),
    "loss": StartupSpec("evaluate_loss", "transfer_neurons.evaluation.loss"),
    "choices": StartupSpec("evaluate_choices", "transfer_neurons.evaluation.choices"),
    "attention": StartupSpec("evaluate_attention", "transfer_neurons.evaluation.attention", "eager"),
    "patching": StartupSpec("evaluate_patching", "transfer_neurons.evaluation.patching"),
    "amplification": StartupSpec("evaluate_amplification", "transfer_neurons.evaluation.amplification"),
}
TOKENIZER_LOADERS = ("auto", "fast", "sentencepiece")


def job_marks(manifest_path: Path, spec: StartupSpec, device: str) -> dict[str, float]:
    """The marks of one job's start-up (this process must not have imported torch yet)."""
    marks = {"started": STARTED}
    import torch  # noqa: F401

    marks["torch"] = time.time()
    import transformers  # noqa: F401

    marks["transformers"] = time.time()
    importlib.import_module(spec.module)
    marks["module"] = time.time()
    from transfer_neurons.model.loading import load_model
    from transfer_neurons.model.manifest import read_manifest
    from transfer_neurons.model.tokenizer_loading import load_tokenizer

    loaded = load_model(manifest_path, device, spec.attn_implementation, with_tokenizer=False)
    marks["model"] = time.time()
    if spec.with_tokenizer:
        manifest = read_manifest(manifest_path)
        load_tokenizer(Path(manifest["location"]), manifest.get("tokenizer"), manifest.get("trust_remote_code", False))
        marks["tokenizer"] = time.time()
    del loaded
    return marks


def tokenizer_marks(manifest_path: Path, loader: str) -> dict[str, float]:
    """The marks of loading the tokenizer with one loader, after importing torch, transformers and the
    tokenizer classes."""
    marks = {"started": STARTED}
    import tokenizers  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    # Both loaders' classes imported off the clock: the job has imported them with the model, so the
    # loader's own time is the file's parsing and the tokenizer's construction.
    from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

    from transfer_neurons.model.manifest import read_manifest
    from transfer_neurons.model.tokenizer_loading import load_tokenizer

    manifest = read_manifest(manifest_path)
    recorded = manifest.get("tokenizer") or {}
    # The SentencePiece loader reads the added tokens its record names; the others need only their name.
    record = recorded if recorded.get("loader") == loader else {"loader": loader}
    marks["imports"] = time.time()
    load_tokenizer(Path(manifest["location"]), record, manifest.get("trust_remote_code", False))
    marks["tokenizer"] = time.time()
    return marks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--job", choices=sorted(JOB_STARTUP))
    which.add_argument("--tokenizer", choices=TOKENIZER_LOADERS)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.job:
        marks = job_marks(args.manifest, JOB_STARTUP[args.job], args.device)
    else:
        marks = tokenizer_marks(args.manifest, args.tokenizer)
    sys.stdout.write(json.dumps(marks) + "\n")


if __name__ == "__main__":
    main()
