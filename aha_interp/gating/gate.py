"""The head gate: multiply each attention head's output by a mask value, without forking model code.

In every Llama/Qwen2/Mistral/Gemma-style decoder (transformers 5.x) the attention output projection
receives the concatenated per-head outputs ``(B, T, H·D)``, head-major (``h·D + d``), with ``H`` the
number of *query* heads even under GQA. A forward-pre-hook on ``o_proj`` views that input as
``(B, T, H, D)`` and multiplies by the mask — the same tensor as TransformerLens's
``blocks.{l}.attn.hook_z``. Zeroing a head this way equals zeroing its columns of ``o_proj``.

The mask is coerced and sliced once when set (not per hook call), so every forward inside one
``masked()`` block — gradient-checkpoint recomputation, every step of ``generate`` — sees the very
same tensor, and gradients flow to it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import AhaError


class HeadGate:
    """Forward-pre-hooks on a list of ``o_proj`` modules, driven by one mask state.

    Parameters
    ----------
    modules : the attention output projections, one per layer (layer order)
    n_heads, head_dim : query heads per layer and their width
    """

    def __init__(self, modules: Sequence[nn.Module], n_heads: int, head_dim: int):
        self.modules = list(modules)
        self.n_layers = len(self.modules)
        self.n_heads = n_heads
        self.head_dim = head_dim
        self._handles: list[Any] = []
        self._stack: list[list[torch.Tensor]] = []  # per-layer gate views; nested masked() blocks push

    @property
    def active(self) -> bool:
        return bool(self._stack)

    def _hook(self, layer: int):
        n_heads, head_dim = self.n_heads, self.head_dim

        def pre_hook(module: nn.Module, args: tuple):
            if not self._stack:
                return None
            x = args[0]
            g = self._stack[-1][layer]  # (1, 1, H, 1) or (B, 1, H, 1)
            if g.shape[0] != 1 and g.shape[0] != x.shape[0]:
                if x.shape[0] % g.shape[0]:
                    raise AhaError(
                        f"per-example mask has batch {g.shape[0]}, but layer {layer} sees batch {x.shape[0]}; "
                        "give one mask row per input row"
                    )
                g = g.repeat_interleave(x.shape[0] // g.shape[0], dim=0)  # beams follow their row
            y = x.unflatten(-1, (n_heads, head_dim)) * g
            return (y.flatten(-2), *args[1:])

        return pre_hook

    def push(self, gates: torch.Tensor) -> None:
        """Start gating with ``gates`` ``[L, H]`` or ``[B, L, H]`` (already validated and on device)."""
        if gates.dim() == 2:
            views = [gates[l].view(1, 1, self.n_heads, 1) for l in range(self.n_layers)]
        else:
            b = gates.shape[0]
            views = [gates[:, l].reshape(b, 1, self.n_heads, 1) for l in range(self.n_layers)]
        if not self._handles:
            self._handles = [m.register_forward_pre_hook(self._hook(l)) for l, m in enumerate(self.modules)]
        self._stack.append(views)

    def pop(self) -> None:
        """Stop gating with the innermost mask; the hooks go once no mask is left."""
        if self._stack:
            self._stack.pop()
        if not self._stack:
            self.remove()

    def remove(self) -> None:
        """Remove every hook and forget every mask (safe to call twice)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._stack = []


class HeadCapture:
    """Records each layer's per-head outputs ``(B, T, H, D)`` — the tensor the gate multiplies.

    Used through :meth:`aha_interp.MaskedModel.capture_heads`; ``cache[l]`` holds the last forward's
    outputs of layer ``l`` (after any mask), detached.
    """

    def __init__(self, modules: Sequence[nn.Module], n_heads: int, head_dim: int, layers: Sequence[int] | None = None):
        self.cache: dict[int, torch.Tensor] = {}
        self._handles = []
        for l, m in enumerate(modules):
            if layers is not None and l not in layers:
                continue

            def hook(module, args, output, l=l):  # a forward hook sees the input after the gate's pre-hook
                self.cache[l] = args[0].detach().unflatten(-1, (n_heads, head_dim))

            self._handles.append(m.register_forward_hook(hook))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
