"""The safetensors format for one ``logits`` tensor, read and written here, byte for byte.

https://github.com/huggingface/safetensors#format: u64 little-endian header length N, N bytes of a JSON header
``{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then the data.
aha-interp writes and reads it itself: the library's writer orders the metadata keys at random (a Rust
HashMap), so two saves of one mask differed, and its numpy reader cannot read bf16. Knows nothing of
``HeadMask`` (which builds on it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import AhaError

#: dtypes a ``logits`` tensor may have (all are read as float32)
_FLOAT_DTYPES = {"F16": "<f2", "BF16": "<u2", "F32": "<f4", "F64": "<f8"}
_MAX_HEADER = 100_000_000  # the safetensors library's own limit


def safetensors_bytes(logits: np.ndarray, metadata: dict[str, str]) -> bytes:
    """A safetensors file holding the float32 tensor ``logits`` and ``metadata``, byte-for-byte
    deterministic (keys in the order given; header padded with spaces to 8 bytes, as the library does)."""
    data = np.ascontiguousarray(logits, dtype="<f4").tobytes()
    header = {"__metadata__": dict(metadata),
              "logits": {"dtype": "F32", "shape": list(logits.shape), "data_offsets": [0, len(data)]}}
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + data


def read_safetensors(path: Path) -> tuple[dict[str, str], np.ndarray]:
    """The metadata and float32 ``logits`` of a safetensors file; any defect raises :class:`AhaError`."""
    bad = f"cannot read {path} as safetensors"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise AhaError(f"{bad} (only {len(head)} bytes); the file is truncated or not a mask")
            n = int.from_bytes(head, "little")
            if n > min(_MAX_HEADER, size - 8):
                raise AhaError(f"{bad} (its header claims {n} bytes, the file has {size}); "
                               "the file is truncated or not a safetensors file")
            try:
                header = json.loads(f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise AhaError(f"{bad} (its header is not valid JSON); the file is corrupted or not a safetensors file") from None
            if not isinstance(header, dict):
                raise AhaError(f"{bad} (its header is not a JSON object); the file is corrupted or not a safetensors file")
            metadata = header.get("__metadata__") or {}
            if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
                raise AhaError(f"{bad} (its __metadata__ is not a map of strings); the file is corrupted")
            entry = header.get("logits")
            if not isinstance(entry, dict):
                found = sorted(k for k in header if k != "__metadata__")[:8]
                raise AhaError(f"{path} has no 'logits' tensor (found {found}); is it an aha-interp mask?")
            dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
            if dtype not in _FLOAT_DTYPES:
                raise AhaError(f"{path}: the 'logits' tensor has dtype {str(dtype)[:20]}; a mask holds float logits "
                               f"({', '.join(_FLOAT_DTYPES)}); convert it to float32 and save it again")
            if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                raise AhaError(f"{bad} (the 'logits' shape {str(shape)[:40]} is not a list of sizes); the file is corrupted")
            if len(shape) != 2 or 0 in shape:
                raise AhaError(f"{path}: the 'logits' tensor has shape {tuple(shape)}; a mask is "
                               "[n_layers, n_heads], both at least 1")
            nbytes = shape[0] * shape[1] * np.dtype(_FLOAT_DTYPES[dtype]).itemsize
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                    and 0 <= offsets[0] and offsets[1] - offsets[0] == nbytes):
                raise AhaError(f"{bad} (the 'logits' offsets {str(offsets)[:40]} do not fit its shape); the file is corrupted")
            if 8 + n + offsets[1] > size:
                raise AhaError(f"{bad} (the 'logits' data end past the end of the file); the file is truncated")
            f.seek(8 + n + offsets[0])
            buf = f.read(nbytes)
    except OSError as e:
        raise AhaError(f"cannot read {path}: {e.strerror or e}") from None
    if len(buf) != nbytes:
        raise AhaError(f"{bad} (the 'logits' data are cut short); the file is truncated")
    arr = np.frombuffer(buf, dtype=_FLOAT_DTYPES[dtype]).reshape(shape)
    if dtype == "BF16":  # bfloat16 is the top half of a float32
        arr = (arr.astype("<u4") << 16).view("<f4")
    return metadata, arr.astype(np.float32)


def check_file(path: Path) -> None:
    if not path.exists():
        raise AhaError(f"no such file: {path}")
    if path.is_dir():
        raise AhaError(f"{path} is a folder; give a mask file (.safetensors, .pth, .pt, .bin, .npy)")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise AhaError(f"{path} is not a regular file; give a mask file (.safetensors, .pth, .pt, .bin, .npy)")
