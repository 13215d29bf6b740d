"""Where and in which precision models run: CUDA with bf16 when present, else CPU float32."""

from __future__ import annotations

import torch


def pick_device_and_dtype(requested: str = "auto") -> tuple[torch.device, torch.dtype]:
    """Resolve ``auto``/``cpu``/``cuda`` to a device and the dtype used on it."""
    if requested not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"device must be auto, cpu or cuda, got {requested!r}")
    use_cuda = requested == "cuda" or (requested == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but no CUDA device is available")
    if use_cuda:
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.float32
