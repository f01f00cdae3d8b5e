"""Reading and writing masks in every supported format.

* ``.safetensors`` — aha-interp's own format (:meth:`HeadMask.save`): tensor ``logits [L, H]`` plus
  JSON metadata.
* ``.pth`` / ``.pt`` / ``.bin`` — torch checkpoints, always read with ``weights_only=True`` (no code
  runs). Either the official AHAMask / HeadsUp checkpoint ``{'model': {'tensor': Tensor[L*(H+1)]}}``
  laid out per layer as ``[head_0 … head_{H-1}, ffn]`` (the FFN slot is dropped), or a plain tensor
  ``[L, H]``.
* ``.npy`` — a plain array ``[L, H]`` (numpy's header parser, never unpickling: object arrays are refused).

1-D vectors need the model's shape: a named preset (``salmonn-13b``) or ``n_layers``/``n_heads``.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_bytes_atomic
from ..errors import AhaError
from .headmask import HeadMask, load_safetensors
from .safetensors_io import check_file

#: Decoder shapes ``(n_layers, n_heads)`` of models whose masks are published or commonly trained.
PRESETS: dict[str, tuple[int, int]] = {
    "salmonn-13b": (40, 40),  # Vicuna-13B v1.1
    "salmonn-7b": (32, 32),  # Vicuna-7B
    "qwen2-audio-7b": (32, 32),  # Qwen-7B decoder
    "llama-3.1-8b": (32, 32),  # HeadsUp
}

SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".npy")


def resolve_shape(
    preset: str | None = None, n_layers: int | None = None, n_heads: int | None = None
) -> tuple[int, int] | None:
    """``(n_layers, n_heads)`` from a preset name or explicit numbers; None when neither is given."""
    if preset is not None:
        key = preset.lower()
        if key not in PRESETS:
            raise AhaError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)} or pass --layers/--heads")
        shape = PRESETS[key]
        if (n_layers is not None and n_layers != shape[0]) or (n_heads is not None and n_heads != shape[1]):
            raise AhaError(f"preset {preset} is {shape[0]} layers x {shape[1]} heads, which contradicts --layers/--heads")
        return shape
    if (n_layers is None) != (n_heads is None):
        raise AhaError("give both --layers and --heads (or a --preset)")
    if n_layers is None:
        return None
    if n_layers <= 0 or n_heads <= 0:  # type: ignore[operator]
        raise AhaError(f"--layers and --heads must be positive, got {n_layers} and {n_heads}")
    return (int(n_layers), int(n_heads))  # type: ignore[arg-type]


def official_vector_to_logits(vec: np.ndarray, n_layers: int, n_heads: int, what: str = "vector") -> np.ndarray:
    """Official AHAMask layout ``[L*(H+1)]`` (per layer ``[head_0…head_{H-1}, ffn]``) → logits ``[L, H]``."""
    vec = np.asarray(vec).ravel()
    expected = n_layers * (n_heads + 1)
    if vec.size != expected:
        raise AhaError(
            f"{what}: has {vec.size} values, but {n_layers} layers x ({n_heads} heads + 1 FFN slot) needs {expected}; "
            "check --preset or --layers/--heads"
        )
    return vec.reshape(n_layers, n_heads + 1)[:, :n_heads]


def logits_to_official_vector(mask: HeadMask, ffn_fill: float = 4.0) -> np.ndarray:
    """Inverse of :func:`official_vector_to_logits`; the unused FFN slots get ``ffn_fill``
    (4.0, the official initialisation, so they read as untouched)."""
    out = np.full((mask.n_layers, mask.n_heads + 1), ffn_fill, dtype=np.float32)
    out[:, : mask.n_heads] = mask.logits
    return out.ravel()


def save_official(mask: HeadMask, path: str | os.PathLike, ffn_fill: float = 4.0) -> None:
    """Write ``mask`` as an official AHAMask checkpoint ``{'model': {'tensor': Tensor[L*(H+1)]}}``."""
    import torch

    payload = {"model": {"tensor": torch.from_numpy(logits_to_official_vector(mask, ffn_fill))}}
    # into memory first: torch names the zip's folder after the file it writes, which here would be the
    # random temporary name (two saves of one mask would differ), and a full disk would raise RuntimeError
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------- readers
def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", msg)
        detail = m.group(1).strip().rstrip(".")[:200] if m else _first_line(e)
        names_code = re.search(r"(?:[Uu]nsupported (?:global|GLOBAL)|Trying to load unsupported)[^\n]*", msg)
        if names_code:
            detail = names_code.group(0).rstrip(".")[:200]
        if names_code or (detail.startswith("Unsupported operand") and _looks_pickled(path)):
            # a class or function to call, or pickle opcodes beyond tensors: not a plain tensor checkpoint
            raise AhaError(
                f"refusing to load {path}: it holds more than plain tensors ({detail}); "
                "aha-interp only reads tensor checkpoints (torch.load weights_only=True) and never runs code from a file"
            ) from None
        raise AhaError(f"cannot read {path} as a torch checkpoint ({detail}); "
                       "the file may be truncated, corrupted or not a mask") from None
    except Exception as e:  # noqa: BLE001 -- any failure to parse untrusted bytes is a bad file, not a bug here
        raise AhaError(f"cannot read {path} as a torch checkpoint ({_first_line(e)}); "
                       "the file may be truncated, corrupted or not a mask") from None


def _looks_pickled(path: Path) -> bool:
    """Whether ``path`` is a zip (torch's format) or starts like a pickle of protocol 2 or later."""
    try:
        with open(path, "rb") as f:
            return f.read(1) == b"\x80" or zipfile.is_zipfile(path)
    except Exception:  # noqa: BLE001 -- is_zipfile raises BadZipFile on some damaged end records
        return False


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    line = text.splitlines()[0]
    head = line.split(". ")[0]
    return (head if len(head) >= 8 else line)[:200]


def _find_tensor(obj: Any, path: Path) -> Any:
    """The mask tensor inside a loaded checkpoint (official layout first)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):
        inner = obj.get("model")
        if isinstance(inner, dict) and isinstance(inner.get("tensor"), torch.Tensor):
            return inner["tensor"]
        for key in ("logits", "mask", "tensor"):
            if isinstance(obj.get(key), torch.Tensor):
                return obj[key]
    raise AhaError(
        f"no mask tensor in {path}: expected the official AHAMask checkpoint {{'model': {{'tensor': Tensor}}}}, "
        f"a dict with a 'logits' tensor, or a tensor [n_layers, n_heads]; found {type(obj).__name__}"
    )


def _array_to_logits(arr: np.ndarray, shape: tuple[int, int] | None, path: Path, official: bool) -> np.ndarray:
    if arr.ndim == 2:
        if shape is not None and tuple(arr.shape) != shape:
            raise AhaError(f"{path}: mask has shape {tuple(arr.shape)}, but {shape[0]} layers x {shape[1]} heads were asked for")
        return arr
    if arr.ndim == 1:
        if shape is None:
            raise AhaError(
                f"{path} holds a flat vector of {arr.size} values; pass --preset (one of {', '.join(PRESETS)}) "
                "or --layers/--heads so it can be laid out"
            )
        n_layers, n_heads = shape
        if arr.size == n_layers * (n_heads + 1):
            return official_vector_to_logits(arr, n_layers, n_heads, str(path))
        if arr.size == n_layers * n_heads and not official:
            return arr.reshape(n_layers, n_heads)
        return official_vector_to_logits(arr, n_layers, n_heads, str(path))  # raises the length error
    raise AhaError(f"{path}: expected a mask of shape [n_layers, n_heads] or a flat vector, got shape {tuple(arr.shape)}")


def load_mask(
    path: str | os.PathLike,
    *,
    preset: str | None = None,
    n_layers: int | None = None,
    n_heads: int | None = None,
    task: str | None = None,
    model: str | None = None,
) -> HeadMask:
    """Load a mask from any supported file (see the module docstring).

    Parameters
    ----------
    path : mask file
    preset : a key of :data:`PRESETS` giving ``(n_layers, n_heads)`` for flat vectors
    n_layers, n_heads : the same, explicitly
    task : metadata task name (default: the file stem)
    model : metadata model id (default: the preset name, when one is given)

    Returns
    -------
    HeadMask with logits ``[n_layers, n_heads]``.
    """
    path = Path(path)
    check_file(path)
    shape = resolve_shape(preset, n_layers, n_heads)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        mask = load_safetensors(path)
        if shape is not None and mask.shape != shape:
            raise AhaError(f"{path}: mask has shape {mask.shape}, but {shape[0]} layers x {shape[1]} heads were asked for")
        fields: dict[str, Any] = {}
        if task:
            fields["task"] = task
        if model:
            fields["model"] = model
        return mask.with_meta(**fields) if fields else mask

    if suffix in (".pth", ".pt", ".bin"):
        arr, official = _read_torch(path)
        source_format = "ahamask-official" if official else "torch"
    elif suffix == ".npy":
        arr, official, source_format = _read_npy(path), False, "numpy"
    else:
        raise AhaError(f"unsupported mask file {path}: expected one of {', '.join(SUFFIXES)}")

    logits = _array_to_logits(arr, shape, path, official)
    return HeadMask(
        logits,
        task=task or path.stem,
        model=model or (preset.lower() if preset else None),
        source=str(path),
        extra={"source_format": source_format},
    )


def _read_torch(path: Path) -> tuple[np.ndarray, bool]:
    """The mask array in a torch checkpoint, and whether it is the official AHAMask layout."""
    import torch

    obj = _torch_load(path)
    tensor = _find_tensor(obj, path)
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
        kind = "quantized" if tensor.is_quantized else f"{tensor.layout} on {tensor.device.type}".replace("torch.", "")
        raise AhaError(f"{path}: the mask tensor is {kind}; save a plain dense float tensor instead")
    try:
        if tensor.is_floating_point():
            tensor = tensor.float()  # bf16/fp16/fp8 logits load as float32
        return tensor.detach().numpy(), isinstance(obj, dict) and "model" in obj
    except (TypeError, RuntimeError) as e:
        raise AhaError(f"{path}: cannot read a mask tensor of dtype {str(tensor.dtype).replace('torch.', '')} "
                       f"({_first_line(e)}); save a float tensor instead") from None


#: the .npy header versions numpy's public reader functions handle (3.0 only adds utf-8 field names)
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npy(path: Path) -> np.ndarray:
    """A plain array from a .npy file, parsed here so that no header or size can run code or exhaust memory."""
    bad = f"cannot read {path} as .npy"
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            try:
                version = np.lib.format.read_magic(f)
                if version not in _NPY_HEADERS:
                    raise AhaError(f"{bad} (format version {version[0]}.{version[1]} is not supported); "
                                   "save the array with numpy.save")
                shape, fortran, dtype = _NPY_HEADERS[version](f)  # numpy's 10 kB header limit applies
            except AhaError:
                raise
            except Exception as e:  # noqa: BLE001 -- ValueError, SyntaxError, TokenError …: a bad header
                raise AhaError(f"{bad} ({_first_line(e)}); the file is corrupted, truncated or not a .npy file") from None
            if dtype.hasobject:
                raise AhaError(f"cannot read {path} as a plain numpy array: it holds Python objects (dtype {dtype}), "
                               "which would need unpickling; save a float array")
            if dtype.names is not None or dtype.subdtype is not None or dtype.itemsize == 0:
                raise AhaError(f"{path}: mask values must be numbers or booleans, got dtype {dtype}; save a float array")
            if any(d < 0 for d in shape):
                raise AhaError(f"{bad} (negative size in shape {shape}); the file is corrupted")
            nbytes = math.prod(shape) * dtype.itemsize
            if nbytes > size - f.tell():
                raise AhaError(f"{bad} (its header promises {nbytes} bytes of data, the file holds "
                               f"{size - f.tell()}); the file is truncated")
            buf = f.read(nbytes)
    except OSError as e:
        raise AhaError(f"cannot read {path}: {e.strerror or e}") from None
    if len(buf) != nbytes:
        raise AhaError(f"{bad} (the data are cut short); the file is truncated")
    try:
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    except ValueError as e:  # e.g. more dimensions than numpy supports
        raise AhaError(f"{bad} ({_first_line(e)}); the file is corrupted") from None


def load_masks(paths, **kwargs: Any) -> dict[str, HeadMask]:
    """Load several masks into ``{file stem: HeadMask}`` (insertion-ordered). Duplicate stems are an error."""
    out: dict[str, HeadMask] = {}
    for p in paths:
        m = load_mask(p, **kwargs)
        name = Path(p).stem
        if name in out:
            raise AhaError(f"two masks are named {name!r}; rename one file so that tables stay readable")
        out[name] = m
    return out
