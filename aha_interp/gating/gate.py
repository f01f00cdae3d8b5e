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
    layout : for a pruned model, per layer the original index of each remaining query head (``-1`` for a
        placeholder head, gated by 0); masks stay ``[n_layers, n_heads]`` in the original geometry
    """

    def __init__(self, modules: Sequence[nn.Module], n_heads: int, head_dim: int,
                 layout: Sequence[Sequence[int]] | None = None):
        self.modules = list(modules)
        self.n_layers = len(self.modules)
        self.n_heads = n_heads
        self.head_dim = head_dim
        # per layer: heads the o_proj input holds, and (pruned) which mask column feeds each (n_heads = zero)
        self.widths = [len(h) for h in layout] if layout is not None else [n_heads] * self.n_layers
        self.index = None if layout is None else [torch.tensor([n_heads if h < 0 else h for h in hs], dtype=torch.long)
                                                  for hs in layout]
        self._handles: list[Any] = []
        self._stack: list[list[torch.Tensor]] = []  # per-layer gate views; nested masked() blocks push

    @property
    def active(self) -> bool:
        return bool(self._stack)

    def _hook(self, layer: int):
        n_heads, head_dim = self.widths[layer], self.head_dim

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
        b = gates.shape[0] if gates.dim() == 3 else 1
        gates = gates.reshape(b, self.n_layers, self.n_heads)
        if self.index is None:
            views = [gates[:, l].reshape(b, 1, self.n_heads, 1) for l in range(self.n_layers)]
        else:  # a pruned model: each remaining head reads its original column; placeholders read a zero
            padded = torch.cat([gates, gates.new_zeros(b, self.n_layers, 1)], -1)
            views = [padded[:, l, idx.to(gates.device)].reshape(b, 1, len(idx), 1) for l, idx in enumerate(self.index)]
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

    def __init__(self, modules: Sequence[nn.Module], n_heads: int, head_dim: int, layers: Sequence[int] | None = None,
                 layout: Sequence[Sequence[int]] | None = None):
        self.cache: dict[int, torch.Tensor] = {}
        self._handles = []
        for l, m in enumerate(modules):
            if layers is not None and l not in layers:
                continue
            width = n_heads if layout is None else len(layout[l])
            kept = None if layout is None else [(i, h) for i, h in enumerate(layout[l]) if h >= 0]

            def hook(module, args, output, l=l, width=width, kept=kept):  # runs after the gate's pre-hook
                z = args[0].detach().unflatten(-1, (width, head_dim))
                if kept is not None:  # a pruned model: back to the original heads, pruned ones zero
                    full = z.new_zeros(*z.shape[:-2], n_heads, head_dim)
                    if kept:
                        full[..., [h for _, h in kept], :] = z[..., [i for i, _ in kept], :]
                    z = full
                self.cache[l] = z

            self._handles.append(m.register_forward_hook(hook))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
