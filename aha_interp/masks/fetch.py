"""Download the masks the AHAMask authors released for SALMONN-13B.

:func:`fetch_salmonn_masks` fetches ``legacy_checkpoints/<task>/checkpoint.pth`` for the ten tasks of
:mod:`aha_interp.masks.official` from the official repository at a pinned commit, checks each file's
SHA-256 against the table below, and saves it as ``<out_dir>/<task>.pth`` (plus the repository's MIT
``LICENSE``), the layout :func:`~aha_interp.masks.official.load_salmonn_masks` reads. The CLI runs it as
``aha-interp fetch-masks``.

The repository is ``X-LANCE/SALMONN-AHAMask``, mirrored as ``cantabile-kwok/SALMONN-AHAMask``; the
pinned commit was read from the mirror, where the files are ordinary git blobs (not LFS pointers).
Both are tried, mirror first; the checksums, not the host, decide whether a file is accepted.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterable

from .._atomic import atomic_path
from ..errors import AhaError
from .official import SALMONN_COMPOSITE_TASKS, SALMONN_SINGLE_TASKS

#: the commit of the official repository the checksums below belong to ("Add req and README").
PINNED_COMMIT = "80046915b62a4aebc526db0b7bdbb8f2aca97d58"
REPOSITORIES = ("cantabile-kwok/SALMONN-AHAMask", "X-LANCE/SALMONN-AHAMask")
#: base URLs tried in order when no ``source`` is given.
DEFAULT_SOURCES = tuple(f"https://raw.githubusercontent.com/{r}/{PINNED_COMMIT}" for r in REPOSITORIES)

#: SHA-256 of ``legacy_checkpoints/<task>/checkpoint.pth`` at :data:`PINNED_COMMIT`, by task stem.
SHA256: dict[str, str] = {
    "asr_librispeech": "0b33dc3887a5e4f5868cabbe76bef0ef3d15146e4064efc54964eac599ca454a",
    "gender_librispeech": "6ec83ae531b92a96c73410466c9a00153332f33adf71ee54fa56850c7dd03649",
    "emotion_iemocap": "cf537bd72c827fb3ead310cdcc021875e77cf64e8097956f55298d3356466e9a",
    "asv_voxceleb1": "1be94223badc6cb78853645b96671e083b96c50ccd3f89da521dc7d2b95911e1",
    "aac_audiocaps": "25992bc5aabbe733e9b8f06676382bf3d49257b2260e92b0572e99dd5723fd92",
    "s2tt_covost2": "2ad2fef363d3b21545455e0286def2d0f557d72c4c334aeae9afadc93ef53cd0",
    "osr_libri2mix": "41cbe8f37264f40c6c1955c187e44be3e62f5e5a9d6a4cbbc028cc57df94c4d7",
    "gender_asr_librispeech": "56dc788f9a493e10b84f7f6a07cf6dd281cf0756b4efab13c8b78165244d7441",
    "asr_gender_librispeech": "2279e044991d932e3b3405fcfb5b252b358d8331596fd9682f50c228536ad893",
    "asr_gender_json_librispeech": "120febcfb87b2a940259bf72c078d867210d06adbc3e76d7b86aca998ef73b50",
}
#: SHA-256 of the repository's ``LICENSE`` (MIT) at :data:`PINNED_COMMIT`.
LICENSE_SHA256 = "80749d5250702861cd612a3a0148e542957154d6ce47caa7b3fcba270b7b2ce5"

TASKS: tuple[str, ...] = (*SALMONN_SINGLE_TASKS, *SALMONN_COMPOSITE_TASKS)
_MAX_BYTES = 1 << 20  # each released file is 7,787 bytes; anything far larger is not one of them
_TIMEOUT_S = 60

if set(SHA256) != set(TASKS):  # pragma: no cover - a guard for whoever edits the task tables
    raise RuntimeError("aha_interp.masks.fetch.SHA256 does not list the tasks of aha_interp.masks.official")


class _Unreachable(Exception):
    """A file could not be read from a source (network, HTTP status, missing file)."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return _sha256(path.read_bytes()) if path.is_file() else None
    except OSError:
        return None


def _is_url(source: str) -> bool:
    return "://" in source


def _read(source: str, rel: str) -> tuple[bytes, str]:
    """The bytes of ``<source>/<rel>`` and where they came from; :class:`_Unreachable` on failure."""
    if _is_url(source):
        where = f"{source.rstrip('/')}/{rel}"
        try:
            with urllib.request.urlopen(where, timeout=_TIMEOUT_S) as r:
                data = r.read(_MAX_BYTES + 1)
        except urllib.error.HTTPError as e:
            raise _Unreachable(f"{where}: HTTP {e.code}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise _Unreachable(f"{where}: {reason}") from e
    else:
        path = Path(source).expanduser() / rel
        where = str(path)
        try:
            with open(path, "rb") as f:
                data = f.read(_MAX_BYTES + 1)
        except OSError as e:
            raise _Unreachable(f"{where}: {e.strerror or e}") from e
    return data, where


def _fetch_one(sources: list[str], rel: str, want: str, dest: Path, log: Callable[[str], None]) -> None:
    """Save the file ``rel`` of the first source that has it as ``dest``, after checking its SHA-256."""
    if _file_sha256(dest) == want:
        log(f"{dest.name}: already present, checksum ok")
        return
    failures = []
    for source in sources:
        try:
            data, where = _read(source, rel)
        except _Unreachable as e:
            failures.append(str(e))
            continue
        got = _sha256(data)
        if got != want:
            raise AhaError(
                f"{where} has SHA-256 {got[:16]}..., not the {want[:16]}... of the official file at commit "
                f"{PINNED_COMMIT[:7]}; nothing was written to {dest}; retry, or use a source that holds "
                f"the official repository at that commit"
            )
        with atomic_path(dest) as tmp:
            tmp.write_bytes(data)
        log(f"{dest.name}: fetched from {where}")
        return
    raise AhaError(
        f"could not fetch {rel} ({'; '.join(failures)}); check the network and retry, or give as source "
        f"a base URL or a folder laid out like the repository at commit {PINNED_COMMIT[:7]} "
        f"(<source>/legacy_checkpoints/<task>/checkpoint.pth)"
    )


def fetch_salmonn_masks(out_dir: str | os.PathLike, source: str | os.PathLike | Iterable[str] | None = None,
                        log: Callable[[str], None] | None = print) -> list[Path]:
    """Fetch the ten released SALMONN-13B masks into ``out_dir`` as ``<task>.pth``; return their paths.

    ``source``: a base URL (``https://...``, ``file://...``) or a local folder laid out like the repository
    (``<source>/legacy_checkpoints/<task>/checkpoint.pth``); by default the official repository at
    :data:`PINNED_COMMIT` on raw.githubusercontent.com. Every file must match :data:`SHA256`; files
    already in ``out_dir`` with the right checksum are kept, and each new one is written atomically.
    The repository's ``LICENSE`` is saved beside them. The returned list holds the ten masks in the
    paper's order, then the licence. A mismatch or an unreachable source raises :class:`AhaError`;
    the file concerned is then not written (the ones before it are complete and verified, so a rerun
    skips them).
    """
    log = log or (lambda s: None)
    if source is None:
        sources = list(DEFAULT_SOURCES)
    elif isinstance(source, (str, os.PathLike)):
        sources = [os.fspath(source)]
    else:
        sources = [os.fspath(s) for s in source]
    if not sources:
        raise AhaError("no source to fetch the SALMONN masks from; give a base URL or a folder")
    for s in sources:
        if not _is_url(s) and not Path(s).expanduser().is_dir():
            raise AhaError(f"mask source {s} is not a folder or a URL; give a base URL or a folder laid out "
                           f"like the repository (<source>/legacy_checkpoints/<task>/checkpoint.pth)")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise AhaError(f"{out} exists and is not a folder; choose another output folder")
    paths = []
    for task in TASKS:
        dest = out / f"{task}.pth"
        _fetch_one(sources, f"legacy_checkpoints/{task}/checkpoint.pth", SHA256[task], dest, log)
        paths.append(dest)
    dest = out / "LICENSE"
    _fetch_one(sources, "LICENSE", LICENSE_SHA256, dest, log)
    paths.append(dest)
    return paths
