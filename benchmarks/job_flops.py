"""The FLOPs an evaluation job must do, counted from the passes it really runs.

A ``ForwardCounter`` watches one model while an analysis runs (through a ``HookSession``, the one
place hooks are registered) and counts:

* per decoder layer that really computes (a layer replayed from a record is not counted; a cached
  prefix is counted in the pass that computed it, once), the real tokens of the pass (padding left
  out: it is work the limit does not need) and, per real token, the real keys it attends to;
* the positions the output projection is applied to (its input rows);
* the padded tokens the layers processed, and the seconds spent inside the model's forward calls.

The limit's FLOPs (``limit_flops``) are, per real token and computing layer, 2 x the layer's matmul
parameters plus 4 x the attention width x the keys it attends (QK^T and the weighted sum of V, every
query head), and 2 x d_model x vocabulary per projected position. The attention width is the query
heads x head dimension of the model's config (Gemma 3 270M: 4 x 256 = 1024, not d_model = 640);
sliding-window layers attend at most their window.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from benchmarks.forward import synchronize
from transfer_neurons.model.adapters import FamilyAdapter
from transfer_neurons.model.hooks import HookSession


def layer_matmul_parameters(adapter: FamilyAdapter) -> list[int]:
    """Per decoder layer, its weight matrices' parameters (biases and norm weights add no matmul)."""
    return [sum(p.numel() for p in layer.parameters() if p.dim() > 1) for layer in adapter.layers()]


def text_config(model):
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def attention_width(model) -> int:
    """Query heads x head dimension: the width of QK^T and of the weighted sum of V per token and key."""
    config = text_config(model)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads * head_dim


def attention_windows(model, n_layers: int) -> list[int | None]:
    """Per layer, the most keys a token attends (a sliding window), or None (every earlier key)."""
    config = text_config(model)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if not window:
        return [None] * n_layers
    if layer_types is None:
        return [window] * n_layers
    return [window if kind == "sliding_attention" else None for kind in layer_types[:n_layers]]


def output_projection_flops(model) -> float:
    """FLOPs of one position's logits: [d_model] x [d_model x vocab]."""
    weight = model.get_output_embeddings().weight
    return 2.0 * weight.shape[0] * weight.shape[1]


@dataclass
class ForwardCounts:
    """What the layers and the output projection computed during one analysis."""

    layer_tokens: list[int]  # per layer: real tokens it computed
    layer_keys: list[int]  # per layer: sum over those tokens of the real keys each attends (window applied)
    padded_layer_tokens: int = 0  # tokens the layers computed, padding included, summed over layers
    logit_positions: int = 0  # rows x positions the output projection was applied to
    decoder_calls: int = 0
    forward_seconds: float = 0.0  # inside the outermost model call (decoder or whole model)

    def as_dict(self) -> dict:
        return asdict(self)

    def same_work(self, other: ForwardCounts) -> bool:
        """Whether two runs computed the same tokens and logits (the timing is not compared)."""
        fields = ("layer_tokens", "layer_keys", "padded_layer_tokens", "logit_positions", "decoder_calls")
        return all(getattr(self, name) == getattr(other, name) for name in fields)


@dataclass(frozen=True)
class FlopModel:
    """The per-unit FLOPs of one model: per layer per token, per attended key, per projected position."""

    layer_flops_per_token: tuple[float, ...]
    attention_flops_per_key: float
    logit_flops_per_position: float

    @classmethod
    def of(cls, model, adapter: FamilyAdapter) -> FlopModel:
        return cls(
            tuple(2.0 * count for count in layer_matmul_parameters(adapter)),
            4.0 * attention_width(model),
            output_projection_flops(model),
        )


def limit_flops(counts: ForwardCounts, flops: FlopModel) -> dict[str, float]:
    """The FLOPs the limit counts, by part: ``layers`` (weight matmuls), ``attention`` (scores and
    weighted values), ``output_projection``, and their ``total``."""
    layers = sum(tokens * per for tokens, per in zip(counts.layer_tokens, flops.layer_flops_per_token, strict=True))
    attention = sum(counts.layer_keys) * flops.attention_flops_per_key
    output = counts.logit_positions * flops.logit_flops_per_position
    return {"layers": layers, "attention": attention, "output_projection": output, "total": layers + attention + output}


@dataclass
class _Pass:
    """The pass under way: its row and width, real tokens, and each real token's count of real keys."""

    padded_tokens: int
    keys: torch.Tensor  # [real tokens] int64: real keys up to and including each real token


class ForwardCounter:
    """Counts what one model computes while the block runs: ``with ForwardCounter(model, adapter) as c:``.

    ``counts`` holds the totals once the block ends.
    """

    def __init__(self, model, adapter: FamilyAdapter) -> None:
        self.model, self.adapter = model, adapter
        n_layers = adapter.facts.n_layers
        self.windows = attention_windows(model, n_layers)
        self.counts = ForwardCounts([0] * n_layers, [0] * n_layers)
        self._pass: _Pass | None = None
        self._depth = 0
        self._started = 0.0
        self._session = HookSession(adapter)

    def __enter__(self) -> ForwardCounter:
        session, decoder = self._session, self.model.base_model
        for module in (self.model, decoder):
            session.observe(module, self._enter_call, before=True)
            session.observe(module, self._leave_call)
        session.observe(decoder, self._on_decoder, before=True, with_kwargs=True)
        for index in range(self.adapter.facts.n_layers):
            # The down projection runs once per computed layer; a replayed layer never reaches it.
            session.observe(
                self.adapter.down_projection(index),
                lambda module, args, index=index: self._on_layer(index),
                before=True,
            )
        session.observe(self.adapter.unembedding(), self._on_output_projection, before=True)
        return self

    def __exit__(self, *exc) -> None:
        self._session.close()

    # --- timing of the outermost model call ---------------------------------------------------
    def _enter_call(self, module, args) -> None:
        if self._depth == 0:
            self._started = time.perf_counter()
        self._depth += 1

    def _leave_call(self, module, args, output) -> None:
        self._depth -= 1
        if self._depth == 0:
            synchronize(self.model.device)
            self.counts.forward_seconds += time.perf_counter() - self._started

    # --- what is computed -----------------------------------------------------------------------
    def _on_decoder(self, module, args, kwargs) -> None:
        inputs = kwargs.get("input_ids", args[0] if args else None)
        if inputs is None:
            inputs = kwargs["inputs_embeds"]
        rows, width = inputs.shape[:2]
        mask = kwargs.get("attention_mask")
        if mask is None:
            cache = kwargs.get("cache")
            cached = cache.get_seq_length() if cache is not None else 0
            mask = torch.ones(rows, cached + width, dtype=torch.long)
        if mask.dim() != 2 or mask.shape[1] < width:
            raise ValueError(
                f"cannot count a pass with an attention mask of shape {tuple(mask.shape)} for width {width}"
            )
        mask = mask.long().cpu()
        new = mask[:, -width:].bool()
        # A real token attends every real key up to itself (the cached ones included).
        keys = mask.cumsum(dim=1)[:, -width:][new]
        self._pass = _Pass(rows * width, keys)
        self.counts.decoder_calls += 1

    def _on_layer(self, index: int) -> None:
        current = self._pass
        if current is None:
            raise RuntimeError("a decoder layer ran outside a decoder call; the counter cannot place it")
        keys = current.keys if self.windows[index] is None else current.keys.clamp(max=self.windows[index])
        self.counts.layer_tokens[index] += int(current.keys.numel())
        self.counts.layer_keys[index] += int(keys.sum())
        self.counts.padded_layer_tokens += current.padded_tokens

    def _on_output_projection(self, module, args) -> None:
        self.counts.logit_positions += int(args[0].shape[:-1].numel())


@dataclass
class CountedCall:
    """One analysis call's result with what it computed."""

    result: object
    counts: ForwardCounts = field(repr=False)


def counted(model, adapter: FamilyAdapter, function) -> CountedCall:
    """Run ``function()`` under a ``ForwardCounter``; its result and the counts."""
    with ForwardCounter(model, adapter) as counter:
        result = function()
    return CountedCall(result, counter.counts)
