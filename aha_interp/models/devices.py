"""Where a model runs and in what precision: ``device`` and ``dtype`` arguments checked once, the same way for
``load_model`` and the command line (``--device``, ``--dtype``)."""

from __future__ import annotations

import torch

from ..errors import AhaError


def as_dtype(dtype, flag: str = "dtype"):
    """A torch dtype, or ``"auto"`` (transformers': the checkpoint's own), from a dtype or its name."""
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    dt = getattr(torch, str(dtype), None)
    if not (isinstance(dt, torch.dtype) and dt.is_floating_point):
        raise AhaError(f"{flag} {dtype!r} is not a torch floating dtype; use float32, bfloat16, float16 or 'auto'")
    return dt


def check_device(device, flag: str = "device") -> torch.device:
    """The device, refused in one line when this machine has no such device."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise AhaError(f"{flag} {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise AhaError(f"{flag} {device}: CUDA is not available on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AhaError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise AhaError(f"{flag} {device}: MPS is not available on this machine; use cpu")
    return dev
