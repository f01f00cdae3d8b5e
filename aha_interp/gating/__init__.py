"""Gating: hooks that multiply attention-head outputs by a mask."""

from .gate import HeadCapture, HeadGate

__all__ = ["HeadGate", "HeadCapture"]
