"""Process-level set-up for training: data parallelism (torchrun / accelerate) and gradient checkpointing.

Kept out of the training loop and the CLI so that each of them reads as what it does.
"""

from __future__ import annotations

import os

import torch


def init_distributed():
    """Join the process group when launched by ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1).

    Returns ``(torch.distributed or None, rank, world_size, local_rank)``; one process gives ``(None, 0, 1, 0)``.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return current()


def current():
    """``(torch.distributed or None, rank, world_size, local_rank)`` of this process, without joining anything."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist, dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return None, 0, 1, 0


def enable_checkpointing(model: torch.nn.Module) -> None:
    """Non-reentrant gradient checkpointing, in train mode (transformers only recomputes there; the LALMs
    served here have no dropout that is active when the weights are frozen)."""
    if hasattr(model, "activation_checkpointing_enable"):  # the transformers ≥ 5.x name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()


def is_checkpointing(model: torch.nn.Module) -> bool:
    """Whether gradient checkpointing is on (either transformers name)."""
    flag = getattr(model, "is_activation_checkpointing", None)
    return bool(getattr(model, "is_gradient_checkpointing", False) if flag is None else flag)
