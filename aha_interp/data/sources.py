"""The user's (audio, answer) pairs: manifests (SALMONN JSON, JSON Lines, CSV), Hugging Face datasets (a dataset
saved with ``save_to_disk``, a folder ``load_dataset`` reads, a hub id in the local cache) and audiofolders.

Every reader returns :class:`~aha_interp.data.tasks.Example` rows whose ``meta`` holds ``id`` (the file stem or
the row index), ``path`` (the audio file, when there is one) and ``index`` (the row), so predictions can be
traced back. Audio is decoded by :func:`~aha_interp.data.audio.load_audio` (any rate, any channels).

Column names are found by convention (audio: ``path``, ``audio``, ``file_name``, ``file``, ``audio_path``;
answer: ``text``, ``target``, ``label``, ``answer``, ``transcript``, ``sentence``) unless ``audio_column`` /
``target_column`` name them. Every problem is one :class:`AhaError` line naming the file, row or column.

Why not ``datasets``' ``Audio`` feature: in datasets 5 it decodes (and an audiofolder build encodes) through
torchcodec, which needs FFmpeg's shared libraries. The audio is read from the Arrow column's ``bytes``/``path``
instead, the same data without that dependency, and an audiofolder's layout (``metadata.csv``/``.jsonl`` with
``file_name``, or one subfolder per label) is read as datasets defines it.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import AhaError
from .audio import AUDIO_SUFFIXES, AudioProblem, check_file, load_audio
from .tasks import Example

AUDIO_COLUMNS = ("path", "audio", "file_name", "file", "audio_path", "audio_filepath", "wav")
TARGET_COLUMNS = ("text", "target", "label", "answer", "transcript", "transcription", "sentence")
MANIFEST_SUFFIXES = (".json", ".jsonl", ".csv")


def _decode(src, sampling_rate: int, decode: bool):
    """``load_audio``, or with ``decode=False`` only the cheap checks (the file is there): the pre-pass that
    finds a bad row before a model is loaded."""
    if decode:
        return load_audio(src, sampling_rate)
    if isinstance(src, Path):
        check_file(src)
    return np.zeros(0, np.float32), 0


def _progress(items, total: int, desc: str, on: bool):
    """``items``, counted by a progress bar on stderr when ``on`` (decoding and resampling take a while)."""
    if not on:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc, unit="clip", leave=False)


def _pick(columns: Sequence[str], given: str | None, conventional: Sequence[str], what: str, where: str,
          flag: str) -> str:
    if given is not None:
        if given not in columns:
            raise AhaError(f"{where} has no column {given!r} ({flag}); its columns are {', '.join(columns)}")
        return given
    for c in conventional:
        if c in columns:
            return c
    raise AhaError(f"{where} has no {what} column (looked for {', '.join(conventional)}); its columns are "
                   f"{', '.join(columns)}; name it with {flag}")


# --------------------------------------------------------------------------------------------- manifests
def manifest_rows(path: Path) -> list[dict]:
    """The rows of a manifest: SALMONN JSON ``{"annotation": [...]}`` or a JSON list, JSON Lines, or CSV."""
    if path.is_dir():
        raise AhaError(f"manifest {path} is a folder; give a .json, .jsonl or .csv file (or --dataset for a folder)")
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise AhaError(f"manifest {path}: unknown format {path.suffix or '(no suffix)'}; use .json (SALMONN "
                       "{'annotation': [...]} or a list), .jsonl or .csv")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Excel's CSV export) is not a column name
    except FileNotFoundError:
        raise AhaError(f"manifest {path} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise AhaError(f"manifest {path} is not UTF-8 text") from None
    except OSError as e:
        raise AhaError(f"cannot read manifest {path}: {e.strerror or e}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import csv
        import io

        try:
            reader = csv.DictReader(io.StringIO(text))
            rows = list(reader)
        except csv.Error as e:
            raise AhaError(f"manifest {path} is not valid CSV ({e})") from None
        if reader.fieldnames is None:
            raise AhaError(f"manifest {path} is empty; a CSV manifest needs a header row and one row per clip")
        for i, r in enumerate(rows):
            if None in r or any(v is None for v in r.values()):
                raise AhaError(f"manifest {path}: row {i + 2} has {'more' if None in r else 'fewer'} fields than the "
                               f"header ({', '.join(reader.fieldnames)}); fix the row")
    elif suffix == ".jsonl":
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise AhaError(f"manifest {path}: line {n} is not JSON ({e.msg}); one JSON object per line") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise AhaError(f"manifest {path} is not JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        rows = data.get("annotation") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise AhaError(f"{path} is not a manifest: give {{'annotation': [{{'path', 'text'}}, ...]}} or a list of "
                           "objects")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
    if bad is not None:
        raise AhaError(f"manifest {path}: entry {bad} is a JSON {type(rows[bad]).__name__}, not an object; fix it")
    if not rows:
        raise AhaError(f"manifest {path} has no entries; add clips or use another manifest")
    return rows


def read_manifest_file(path: str | Path, *, sampling_rate: int, task: str | None = None,
                       audio_column: str | None = None, target_column: str | None = None,
                       need_target: bool = True, progress: bool = False, decode: bool = True) -> list[Example]:
    """Examples from a manifest. A ``task`` column (SALMONN manifests) keeps only the rows of ``task``; relative
    audio paths start at the manifest's folder."""
    path = Path(path)
    rows = manifest_rows(path)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    acol = _pick(columns, audio_column, AUDIO_COLUMNS, "audio path", f"manifest {path}", "--audio-column")
    tcol = _pick(columns, target_column, TARGET_COLUMNS, "answer", f"manifest {path}", "--target-column") \
        if need_target or target_column else None
    keep = range(len(rows))
    if task is not None and "task" in columns:
        keep = [i for i in keep if rows[i].get("task") == task]
        if not keep:
            tasks = sorted({str(r.get("task")) for r in rows})
            raise AhaError(f"manifest {path} has no entries with task {task!r} (its tasks: {', '.join(tasks)})")
    out = []
    for i in _progress(keep, len(keep), f"reading {path.name}", progress):
        r = rows[i]
        where = f"manifest {path}: row {i}"
        rel = r.get(acol)
        if not isinstance(rel, str) or not rel.strip():
            raise AhaError(f"{where}: {acol!r} must be a file path, got {rel!r}; fix the row")
        file = path.parent / rel
        try:
            audio, rate = _decode(file, sampling_rate, decode)
        except AudioProblem as p:
            raise AhaError(f"{where}: {file} {p}") from None
        meta = {k: v for k, v in r.items() if k not in (acol, tcol)}
        meta.update(id=Path(rel).stem, path=str(file), index=i, source_rate=rate)
        out.append(Example(task or str(r.get("task", "")), audio, _target(r.get(tcol), where, tcol), meta))
    return out


def _target(value, where: str, column: str | None) -> str:
    if column is None:
        return ""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise AhaError(f"{where}: no answer in {column!r}; fill it in or drop the row")
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    text = text.strip()  # "good.wav, male" in a hand-written CSV: the answer is "male"
    if not text:
        raise AhaError(f"{where}: the answer in {column!r} is empty; fill it in or drop the row")
    return text


# --------------------------------------------------------------------------------------------- datasets
def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").exists() or (folder / "state.json").exists()


DATA_SUFFIXES = (".csv", ".parquet", ".json", ".jsonl", ".arrow", ".tsv", ".txt")
SPLIT_NAMES = ("train", "test", "validation", "valid", "dev", "eval")
DATA_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet",
                 ".arrow": "arrow"}


def _has_metadata(folder: Path) -> bool:
    return (folder / "metadata.csv").exists() or (folder / "metadata.jsonl").exists()


def _is_audiofolder(folder: Path) -> bool:
    """An audiofolder: metadata files (here or in split folders), or audio with no data file naming it (the
    labels are then the folder names). A folder of CSV/parquet/JSON data files is a dataset load_dataset reads."""
    if _has_metadata(folder) or any(_has_metadata(folder / n) for n in SPLIT_NAMES):
        return True
    files = [p for p in folder.rglob("*") if p.is_file()]
    if any(p.suffix.lower() in DATA_SUFFIXES for p in files):
        return False
    return any(p.suffix.lower() in AUDIO_SUFFIXES for p in files)


def read_dataset(spec: str, *, sampling_rate: int, split: str | None = None, audio_column: str | None = None,
                 target_column: str | None = None, need_target: bool = True, progress: bool = False,
                 decode: bool = True) -> list[Example]:
    """Examples from a dataset: a ``save_to_disk`` folder, an audiofolder, another folder ``load_dataset`` reads
    (parquet, CSV, JSON), or a hub id in the local HF cache (``HF_HUB_OFFLINE=1`` reads only the cache)."""
    folder = Path(spec).expanduser()
    if folder.is_dir() and not _is_saved_dataset(folder) and _is_audiofolder(folder):
        return _read_audiofolder(folder, sampling_rate, split, audio_column, target_column, need_target, progress,
                                 decode)
    table, features, where = _arrow_table(spec, folder, split)
    columns = table.column_names
    # a column of datasets' Audio type is the audio, whatever its name (Common Voice also has a "path" column)
    typed = [c for c in columns if type(features.get(c)).__name__ == "Audio"]
    acol = _pick(columns, audio_column, typed + list(AUDIO_COLUMNS), "audio", where, "--audio-column")
    tcol = _pick(columns, target_column, TARGET_COLUMNS, "answer", where, "--target-column") \
        if need_target or target_column else None
    if table.num_rows == 0:
        raise AhaError(f"{where} has no rows; give a split with examples (--split)")
    out = []
    targets = table.column(tcol).to_pylist() if tcol else [None] * table.num_rows
    names = getattr(features.get(tcol), "names", None)
    if names:  # a ClassLabel column holds class indices: the answer is the class name
        targets = [names[t] if isinstance(t, int) and 0 <= t < len(names) else t for t in targets]
    cells = zip(table.column(acol).to_pylist(), targets)
    for i, (a, t) in enumerate(_progress(cells, table.num_rows, f"reading {spec}", progress)):
        row = f"{where}: row {i}"
        src, path = _audio_source(a, folder if folder.is_dir() else None, row, acol)
        try:
            audio, rate = _decode(src, sampling_rate, decode)
        except AudioProblem as p:
            raise AhaError(f"{row} ({path or acol}) {p}") from None
        out.append(Example("", audio, _target(t, row, tcol), {"id": Path(path).stem if path else str(i),
                                                               "path": path, "index": i, "source_rate": rate}))
    return out


def _arrow_table(spec: str, folder: Path, split: str | None):
    """The rows as an Arrow table, read without decoding audio (see the module docstring)."""
    import datasets

    name, config = (spec, None)
    if not folder.is_dir() and ":" in spec:  # ORG/NAME:CONFIG, for hub datasets with configurations
        name, config = spec.rsplit(":", 1)
    try:
        if folder.is_dir() and _is_saved_dataset(folder):
            ds = datasets.load_from_disk(str(folder))
            if split is not None and not isinstance(ds, datasets.DatasetDict):
                raise AhaError(f"dataset {spec} is one split (no DatasetDict): drop --split {split}")
        elif folder.is_dir():  # data files (CSV, JSON, parquet): their builder, split by file and folder names
            files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in DATA_BUILDERS
                     and not p.name.startswith("metadata.")]
            kinds = {DATA_BUILDERS[p.suffix.lower()] for p in files}
            if len(kinds) != 1:
                raise AhaError(f"dataset folder {folder} holds " + (f"{' and '.join(sorted(kinds))} files; keep one "
                               "format" if kinds else "no data files (CSV, JSON, parquet), metadata or audio"))
            by_split: dict[str, list[str]] = {}
            for p in files:
                words = [w for part in p.relative_to(folder).with_suffix("").parts
                         for w in re.split(r"[-_.]", part.lower())]
                by_split.setdefault(next((n for n in SPLIT_NAMES if n in words), "train"), []).append(str(p))
            ds = datasets.load_dataset(kinds.pop(), data_files=by_split, split=split)
        else:
            ds = datasets.load_dataset(name, config, split=split)
    except AhaError:
        raise
    except FileNotFoundError as e:
        raise AhaError(f"no dataset at {spec}: {str(e).splitlines()[0] if str(e) else 'not found'}; give a folder "
                       "written by save_to_disk, a data folder, or a hub id in the local cache") from None
    except (ValueError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AhaError(f"cannot read dataset {spec}: {msg}") from None
    except Exception as e:  # datasets' own errors (DatasetNotFoundError, offline cache misses, …)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AhaError(f"cannot read dataset {spec}: {msg} (offline, a hub id must be in the local cache)") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise AhaError(f"dataset {spec} has splits {', '.join(ds)}; choose one with --split")
            split = next(iter(ds))
        if split not in ds:
            raise AhaError(f"dataset {spec} has no split {split!r}; its splits are {', '.join(ds)}")
        ds = ds[split]
    where = f"dataset {spec}" + (f" [{split}]" if split else "")
    return ds.with_format("arrow")[:], dict(ds.features), where


def _audio_source(value, folder: Path | None, row: str, column: str) -> tuple[bytes | Path, str | None]:
    """What to decode for one cell of the audio column: its bytes, or the file it names."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data:
            return data, path
        if path:
            p = Path(path)
            p = p if p.is_absolute() or folder is None else folder / p
            return p, str(p)
        raise AhaError(f"{row}: the {column!r} cell holds neither bytes nor a path")
    if isinstance(value, str) and value.strip():
        p = Path(value)
        p = p if p.is_absolute() or folder is None else folder / p
        return p, str(p)
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value), None
    raise AhaError(f"{row}: {column!r} is not audio (got {type(value).__name__}); name the audio column with "
                   "--audio-column")


def _read_audiofolder(folder: Path, sampling_rate: int, split: str | None, audio_column: str | None,
                      target_column: str | None, need_target: bool, progress: bool = False,
                      decode: bool = True) -> list[Example]:
    """datasets' AudioFolder layout: ``metadata.csv``/``.jsonl`` with a ``file_name`` column (paths relative to
    the folder), or no metadata and one subfolder per label (the label is the folder name). ``split`` picks a
    ``train/``, ``test/`` … subfolder when there is one."""
    root = folder
    splits = [n for n in SPLIT_NAMES if (folder / n).is_dir()]
    if split is None and splits and not _has_metadata(folder):
        raise AhaError(f"audiofolder {folder} has split folders ({', '.join(splits)}); choose one with --split")
    if split is not None:
        if not (folder / split).is_dir():
            subs = sorted(p.name for p in folder.iterdir() if p.is_dir())
            raise AhaError(f"audiofolder {folder} has no split folder {split!r}" +
                           (f"; its folders are {', '.join(subs)}" if subs else "; drop --split"))
        root = folder / split
    meta = next((root / m for m in ("metadata.csv", "metadata.jsonl") if (root / m).exists()), None)
    if meta is not None:
        rows = manifest_rows(meta)
        columns = list(dict.fromkeys(k for r in rows for k in r))
        acol = _pick(columns, audio_column, ("file_name", *AUDIO_COLUMNS), "file_name", f"{meta}", "--audio-column")
        tcol = _pick(columns, target_column, TARGET_COLUMNS, "answer", f"{meta}", "--target-column") \
            if need_target or target_column else None
        items = [(r.get(acol), r.get(tcol) if tcol else None, r) for r in rows]
        label_from = str(meta)
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise AhaError(f"audiofolder {root} holds no audio files ({', '.join(AUDIO_SUFFIXES)}) and no metadata")
        if target_column not in (None, "label"):
            raise AhaError(f"audiofolder {root} has no metadata file: its only answer is the folder name ('label'); "
                           f"add a metadata.csv with a {target_column!r} column")
        items = [(str(p.relative_to(root)), p.parent.name if p.parent != root else None, {}) for p in files]
        tcol = "label" if need_target or target_column else None
        label_from = f"audiofolder {root} (labels are folder names)"
    out = []
    for i, (rel, target, rest) in enumerate(_progress(items, len(items), f"reading {root.name}", progress)):
        where = f"{label_from}: row {i}"
        if not isinstance(rel, str) or not rel.strip():
            raise AhaError(f"{where}: no file name; fix the row")
        file = root / rel
        try:
            audio, rate = _decode(file, sampling_rate, decode)
        except AudioProblem as p:
            raise AhaError(f"{where}: {file} {p}") from None
        extra = {k: v for k, v in rest.items() if k not in (acol if meta is not None else None, tcol)}
        out.append(Example("", audio, _target(target, where, tcol),
                           {**extra, "id": Path(rel).stem, "path": str(file), "index": i, "source_rate": rate}))
    if not out:
        raise AhaError(f"audiofolder {root} has no rows")
    return out


# --------------------------------------------------------------------------------------------- one entry point
def load_examples(*, sampling_rate: int, task: str | None = None, manifest: str | Path | None = None,
                  dataset: str | None = None, split: str | None = None, audio_column: str | None = None,
                  target_column: str | None = None, labels: Iterable[str] | None = None,
                  max_samples: int | None = None, need_target: bool = True, progress: bool = False,
                  decode: bool = True) -> list[Example]:
    """The user's examples from ``manifest`` or ``dataset`` for ``task``, resampled to ``sampling_rate``.

    ``labels``: every answer must be one of them (a classification task). ``max_samples``: clips longer than the
    model's audio window are cut to it, with one warning saying how many (the policy: never silently).
    ``decode=False``: rows, columns, answers and file presence only, no audio (a check before a model loads)."""
    if (manifest is None) == (dataset is None):
        raise AhaError("give the data as --manifest FILE or --dataset PATH_OR_ID (one of them)")
    if manifest is not None:
        examples = read_manifest_file(manifest, sampling_rate=sampling_rate, task=task, audio_column=audio_column,
                                      target_column=target_column, need_target=need_target, progress=progress,
                                      decode=decode)
        origin = str(manifest)
    else:
        examples = read_dataset(dataset, sampling_rate=sampling_rate, split=split, audio_column=audio_column,
                                target_column=target_column, need_target=need_target, progress=progress,
                                decode=decode)
        origin = str(dataset)
    if labels is not None:
        allowed = set(labels)
        for e in examples:
            if e.target not in allowed:
                raise AhaError(f"{origin}: row {e.meta['index']} ({e.meta.get('path') or e.meta['id']}) has the "
                               f"answer {e.target!r}, which is not in --labels ({', '.join(sorted(allowed))}); add "
                               "it to --labels or fix the row")
    for e in examples:
        e.task = task or e.task
    if max_samples is not None:
        cut = 0
        for e in examples:
            if len(e.audio) > max_samples:
                e.audio, cut = e.audio[:max_samples], cut + 1
                e.meta["truncated"] = True
        if cut:
            secs = max_samples / sampling_rate
            warnings.warn(f"{origin}: {cut} of {len(examples)} clips are longer than the model's {secs:g} s audio "
                          f"window and were cut to their first {secs:g} s", UserWarning, stacklevel=2)
    return examples
