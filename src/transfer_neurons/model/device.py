"""Where and in which precision models run (``runtime.device`` and ``runtime.dtype``).

``auto`` precision is bf16 on CUDA and float32 on the CPU; the paper's authors load every model in
float32 (transformers' default), which ``dtype: float32`` reproduces on a GPU too.
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_OPTIONS = ("auto", *DTYPES)


def pick_device_and_dtype(requested: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Resolve ``runtime.device`` (auto/cpu/cuda) and ``runtime.dtype`` (auto/float32/bfloat16/float16).

    ``auto`` precision is bf16 on CUDA and float32 on the CPU.
    """
    if requested not in DEVICES:
        raise ValueError(f"runtime.device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if dtype not in DTYPE_OPTIONS:
        raise ValueError(f"runtime.dtype must be one of {', '.join(DTYPE_OPTIONS)}, got {dtype!r}")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("runtime.device: cuda was requested but no CUDA device is available")
    device = torch.device("cuda" if use_cuda else "cpu")
    if dtype != "auto":
        return device, DTYPES[dtype]
    return device, torch.bfloat16 if use_cuda else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: the name ``runtime.dtype`` uses, as dumps record it."""
    return str(dtype).removeprefix("torch.")
