"""Bad input, every command: one line ``error: …`` on stderr, exit 2, no file written, nothing computed first.

The matrix below is (argv, exit code, message fragment, paths that must not exist). Placeholders in argv:
``{tmp}`` the test's folder, ``{masks}`` three mask files there, ``{nomodel}`` a model folder that does not
exist (an error about the bad argument, not about the model, shows the argument was checked first), ``{ro}`` a
folder nobody may write in, ``{file}`` an existing file, ``{dir}`` an existing folder (``dir.safetensors``,
``dir.csv``, ``dir.png`` are folders too). A tripwire fails the test if a model is loaded, trained,
synthesised, fetched or reproduced. Interrupts (Ctrl-C) are tested at the end: in-process for the line, in a
subprocess (a real SIGINT to the process group, as a terminal sends it) for ``train`` and ``reproduce``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aha_interp import HeadMask
from aha_interp.cli import main

from .conftest import random_mask

M = "{masks}"  # expands to the three mask files
BIG = str(2**31)

# (id, argv, exit code, fragment of the one stderr line, paths under {tmp} that must not exist)
CASES = [
    # ---------------------------------------------------------------- train: every number, finite and in range
    *[(f"train --{opt} {v}", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                              f"--{opt}", v], 2, f"--{opt}", ["m.safetensors", "runs"])
      for opt, vals in [("lr", ["nan", "inf", "-inf", "0", "-0.1", "1e9"]),
                        ("lam", ["nan", "inf", "-1e-3", "1e9"]),
                        ("tau-end", ["nan", "inf", "0", "-0.5", "1e-9", "1e9"]),
                        ("steps", ["0", "-1", BIG]), ("batch-size", ["0", "-4"]), ("n-train", ["0", "-1"]),
                        ("seed", ["-1", BIG]), ("threads", ["0", "-2", "100000"])]
      for v in vals],
    ("train --noise", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                       "--noise", "gauss"], 2, "noise", ["m.safetensors"]),
    ("train --device", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                        "--device", "gpu9"], 2, "--device", ["m.safetensors"]),
    ("train --dtype", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                       "--dtype", "float99"], 2, "--dtype", ["m.safetensors"]),
    ("train --dtype int", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                           "--dtype", "int8"], 2, "--dtype", ["m.safetensors"]),
    ("train --manifest missing", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                                  "--manifest", "{tmp}/none.json"], 2, "none.json", ["m.safetensors"]),
    # ---------------------------------------------------------------- train: outputs
    ("train --out folder", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{dir}.safetensors"], 2,
     "is a folder", []),
    ("train --out under a file", ["train", "--task", "gr", "--model", "{nomodel}", "--out",
                                  "{file}/m.safetensors"], 2, "is a file", []),
    ("train --out read-only", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{ro}/m.safetensors"], 2,
     "cannot write", []),
    ("train --run-dir file", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                              "--run-dir", "{file}"], 2, "--run-dir", ["m.safetensors"]),
    ("train --run-dir under a file", ["train", "--task", "gr", "--model", "{nomodel}", "--out",
                                      "{tmp}/m.safetensors", "--run-dir", "{file}/run"], 2, "--run-dir",
     ["m.safetensors"]),
    ("train --run-dir read-only", ["train", "--task", "gr", "--model", "{nomodel}", "--out", "{tmp}/m.safetensors",
                                   "--run-dir", "{ro}/run"], 2, "cannot write", ["m.safetensors"]),
    # ---------------------------------------------------------------- eval
    *[(f"eval --{opt} {v}", ["eval", "--task", "gr", "--condition", "none", "--model", "{nomodel}", f"--{opt}", v],
       2, f"--{opt}", [])
      for opt, vals in [("beams", ["0", "-1"]), ("threads", ["0", "100000"]), ("seed", ["-1", BIG]),
                        ("n", ["0", "-3", BIG])] for v in vals],
    ("eval --mask with none", ["eval", "--task", "gr", "--condition", "none", "--model", "{nomodel}",
                               "--mask", "{tmp}/asr.safetensors"], 2, "--mask applies", []),
    ("eval --prompt-type with mask", ["eval", "--task", "gr", "--condition", "mask", "--model", "{nomodel}",
                                      "--mask", "{tmp}/asr.safetensors", "--prompt-type", "synonyms_complex"], 2,
     "--prompt-type", []),
    ("eval --out folder", ["eval", "--task", "gr", "--condition", "none", "--model", "{nomodel}",
                           "--out", "{dir}.csv"], 2, "is a folder", []),
    ("eval --out under a file", ["eval", "--task", "gr", "--condition", "none", "--model", "{nomodel}",
                                 "--out", "{file}/r.csv"], 2, "is a file", []),
    ("eval --out read-only", ["eval", "--task", "gr", "--condition", "none", "--model", "{nomodel}",
                              "--out", "{ro}/r.csv"], 2, "cannot write", []),
    # ---------------------------------------------------------------- data
    ("data --n 0", ["data", "gr", "--n", "0", "--out", "{tmp}/d"], 2, "--n", ["d"]),
    ("data --n big", ["data", "gr", "--n", BIG, "--out", "{tmp}/d"], 2, "--n", ["d"]),
    ("data --seed -1", ["data", "gr", "--seed", "-1", "--out", "{tmp}/d"], 2, "--seed", ["d"]),
    ("data --out file", ["data", "gr", "--out", "{file}"], 2, "is a file", []),
    ("data --out under a file", ["data", "gr", "--out", "{file}/d"], 2, "is a file", []),
    ("data --out read-only", ["data", "gr", "--out", "{ro}/d"], 2, "cannot write", []),
    # ---------------------------------------------------------------- build-model
    *[(f"build-model --minutes {v}", ["build-model", "--minutes", v, "--out", "{tmp}/bm"], 2, "--minutes", ["bm"])
      for v in ["-1", "0", "nan", "inf", "1e9"]],
    ("build-model --n-eval 0", ["build-model", "--n-eval", "0", "--out", "{tmp}/bm"], 2, "--n-eval", ["bm"]),
    ("build-model --seed -1", ["build-model", "--seed", "-1", "--out", "{tmp}/bm"], 2, "--seed", ["bm"]),
    ("build-model NaN recipe", ["build-model", "--config", "{tmp}/nan.json", "--out", "{tmp}/bm"], 2, "finite",
     ["bm"]),
    ("build-model --out file", ["build-model", "--out", "{file}"], 2, "is a file", []),
    ("build-model --out under a file", ["build-model", "--out", "{file}/bm"], 2, "is a file", []),
    ("build-model --out read-only", ["build-model", "--out", "{ro}/bm"], 2, "cannot write", []),
    # ---------------------------------------------------------------- reproduce
    *[(f"reproduce --workers {v}", ["reproduce", "--workers", v, "--out", "{tmp}/o", "--model", "{nomodel}"], 2,
       "--workers", ["o"]) for v in ["0", "-1", "100000"]],
    ("reproduce --salmonn-masks missing", ["reproduce", "--salmonn-masks", "{tmp}/none", "--out", "{tmp}/o",
                                           "--model", "{nomodel}"], 2, "fetch-masks", ["o"]),
    ("reproduce --out file", ["reproduce", "--out", "{file}", "--model", "{nomodel}"], 2, "is a file", []),
    ("reproduce --out under a file", ["reproduce", "--out", "{file}/o", "--model", "{nomodel}"], 2, "is a file", []),
    ("reproduce --out read-only", ["reproduce", "--out", "{ro}/o", "--model", "{nomodel}"], 2, "cannot write", []),
    ("reproduce --retrain --masks file", ["reproduce", "--retrain", "--masks", "{file}", "--out", "{tmp}/o",
                                          "--model", "{nomodel}"], 2, "--masks", ["o"]),
    # ---------------------------------------------------------------- fetch-masks, figures salmonn
    ("fetch-masks --out file", ["fetch-masks", "--out", "{file}"], 2, "is a file", []),
    ("fetch-masks --out under a file", ["fetch-masks", "--out", "{file}/m"], 2, "is a file", []),
    ("fetch-masks --out read-only", ["fetch-masks", "--out", "{ro}/m"], 2, "cannot write", []),
    ("figures salmonn --out file", ["figures", "salmonn", "--masks", "{tmp}/none", "--out", "{file}"], 2,
     "is a file", []),
    ("figures salmonn --out under a file", ["figures", "salmonn", "--masks", "{tmp}/none", "--out", "{file}/f"], 2,
     "is a file", []),
    ("figures salmonn --out read-only", ["figures", "salmonn", "--masks", "{tmp}/none", "--out", "{ro}/f"], 2,
     "cannot write", []),
    # ---------------------------------------------------------------- import
    ("import --out folder", ["import", "{tmp}/asr.safetensors", "--out", "{dir}.safetensors"], 2, "is a folder", []),
    ("import --out under a file", ["import", "{tmp}/asr.safetensors", "--out", "{file}/x.pth"], 2, "is a file", []),
    ("import --out read-only", ["import", "{tmp}/asr.safetensors", "--out", "{ro}/x.pth"], 2, "cannot write", []),
    # ---------------------------------------------------------------- tables: info, analyze
    *[(f"{' '.join(cmd)} --out {kind}", [*cmd, M, *extra, "--out", out], 2, frag, [])
      for cmd, extra in [(["info"], []), (["analyze", "jaccard"], []), (["analyze", "layers"], []),
                         (["analyze", "algebra"], ["--a", "{tmp}/asr.safetensors", "--b", "{tmp}/gr.safetensors"])]
      for kind, out, frag in [("folder", "{dir}.csv", "is a folder"), ("under a file", "{file}/t.md", "is a file"),
                              ("read-only", "{ro}/t.json", "cannot write")]],
    ("analyze layers --band -1", ["analyze", "layers", M, "--band", "-1"], 2, "--band", []),
    ("info --layers 0", ["info", "{tmp}/flat.npy", "--layers", "0", "--heads", "8"], 2, "--layers", []),
    # ---------------------------------------------------------------- plots
    *[(f"plot {name} --out {kind}", ["plot", name, *args, "--out", out], 2, frag, [])
      for name, args in [("mask", ["{tmp}/asr.safetensors"]), ("jaccard", [M]), ("layers", [M]), ("threshold", [M]),
                         ("algebra", ["{tmp}/ser.safetensors", "--a", "{tmp}/asr.safetensors",
                                      "--b", "{tmp}/gr.safetensors"])]
      for kind, out, frag in [("folder", "{dir}.png", "is a folder"), ("under a file", "{file}/f.png", "is a file"),
                              ("read-only", "{ro}/f.pdf", "cannot write")]],
]


@pytest.fixture
def readonly_dir(tmp_path):
    """A folder this process cannot write in: a chmod 555 one, or (as root, who writes anyway) /sys."""
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        yield ro
        ro.chmod(0o755)
        return
    try:
        import tempfile

        with tempfile.TemporaryFile(dir="/sys"):
            pass
    except OSError:
        yield Path("/sys")
        return
    pytest.skip("no folder this process cannot write in")


@pytest.fixture
def tripwire(monkeypatch):
    """Nothing may be loaded, trained, synthesised, fetched or run before the arguments are checked."""
    import aha_interp.data.tasks as tasks
    import aha_interp.masks.fetch as fetch
    import aha_interp.models.lalm as lalm
    import aha_interp.reproduce.paper as paper
    import aha_interp.reproduce.salmonn as salmonn
    import aha_interp.training.embedded as emb

    def trip(what):
        def fail(*a, **k):
            pytest.fail(f"{what} ran before the arguments were checked")
        return fail

    for mod, name in [(lalm, "load_model"), (emb, "train_embedded"), (tasks, "make_examples"),
                      (tasks, "write_manifest"), (fetch, "fetch_salmonn_masks"), (paper, "reproduce"),
                      (salmonn, "build")]:
        monkeypatch.setattr(mod, name, trip(f"{mod.__name__}.{name}"))


def _tree(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _expand(argv, tmp: Path, ro: Path) -> list[str]:
    subs = {"{tmp}": str(tmp), "{nomodel}": str(tmp / "no-model"), "{ro}": str(ro), "{file}": str(tmp / "file.txt"),
            "{dir}": str(tmp / "dir")}
    out = []
    for a in argv:
        if a == M:
            out += [str(tmp / f"{n}.safetensors") for n in ("asr", "gr", "ser")]
            continue
        for k, v in subs.items():
            a = a.replace(k, v)
        out.append(a)
    return out


@pytest.mark.parametrize("argv, code, fragment, absent", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(argv, code, fragment, absent, tmp_path, readonly_dir, tripwire,
                                                  monkeypatch, capsys):
    rng = np.random.default_rng(0)
    for name in ("asr", "gr", "ser"):
        random_mask(rng, (6, 8), task=name).save(tmp_path / f"{name}.safetensors")
    np.save(tmp_path / "flat.npy", np.ones(48, dtype=np.float32))
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "nan.json").write_text('{"minutes": 1, "lr": NaN}')
    for suffix in ("", ".safetensors", ".csv", ".png"):
        (tmp_path / f"dir{suffix}").mkdir()
    work = tmp_path / "cwd"  # default outputs (runs/, figures/, masks/salmonn-13b) would land here
    work.mkdir()
    monkeypatch.chdir(work)
    before = _tree(tmp_path)

    rc = main(_expand(argv, tmp_path, readonly_dir))

    err = capsys.readouterr().err
    assert rc == code, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0], lines[0]
    assert "no-model" not in lines[0]  # the bad argument is reported, not the missing model
    assert _tree(tmp_path) == before
    for p in absent:
        assert not (tmp_path / p).exists() and not (work / p).exists(), p


def test_the_matrix_covers_every_command_that_writes_and_every_number():
    ids = " ".join(c[0] for c in CASES)
    for cmd in ("import", "train", "eval", "info", "analyze jaccard", "analyze layers", "analyze algebra",
                "plot mask", "plot jaccard", "plot layers", "plot threshold", "plot algebra", "figures salmonn",
                "fetch-masks", "data", "build-model", "reproduce"):
        for kind in ("folder" if cmd in ("import", "train", "eval", "info") or cmd.startswith(("analyze", "plot"))
                     else "file", "under a file", "read-only"):
            assert f"{cmd} --out {kind}" in ids, (cmd, kind)
    for opt in ("--lr", "--lam", "--tau-end", "--steps", "--batch-size", "--n-train", "--seed", "--threads",
                "--beams", "--n ", "--minutes", "--n-eval", "--workers"):
        assert opt in ids, opt


# --------------------------------------------------------------------------------------------- interrupts
def _raise_interrupt(*a, **k):
    raise KeyboardInterrupt


@pytest.mark.parametrize("argv, patch, expected", [
    (["info", "{tmp}/asr.safetensors"], ("aha_interp.masks", "load_masks"), "interrupted: files already written"),
    (["eval", "--task", "gr", "--condition", "none"], ("aha_interp.models.lalm", "load_model"),
     "interrupted: nothing was written"),
    (["train", "--task", "gr", "--out", "{tmp}/m.safetensors"], ("aha_interp.models.lalm", "load_model"),
     "interrupted: training had not started"),
    (["reproduce", "--out", "{tmp}/o"], ("aha_interp.reproduce.paper", "reproduce"),
     "interrupted: finished evaluations are kept in {tmp}/o/cache/evals.csv; run it again to continue"),
    (["fetch-masks", "--out", "{tmp}/m"], ("aha_interp.masks.fetch", "fetch_salmonn_masks"),
     "interrupted: the masks already in {tmp}/m are complete and verified"),
    (["data", "gr", "--out", "{tmp}/d"], ("aha_interp.data.tasks", "make_examples"), "manifest.json was not written"),
    (["build-model", "--out", "{tmp}/bm"], ("aha_interp.training.embedded", "train_embedded"),
     "the model in {tmp}/bm is unchanged"),
], ids=["info", "eval", "train", "reproduce", "fetch-masks", "data", "build-model"])
def test_an_interrupt_prints_one_line_of_what_was_kept(argv, patch, expected, tmp_path, monkeypatch, capsys):
    import importlib

    random_mask(np.random.default_rng(0), (6, 8), task="asr").save(tmp_path / "asr.safetensors")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(importlib.import_module(patch[0]), patch[1], _raise_interrupt)
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 130
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("interrupted: "), err
    assert expected.replace("{tmp}", str(tmp_path)) in err


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "aha_interp.cli", *args]


class _Stderr:
    """A child's stderr, read as it comes (a thread), so the test can act on progress lines."""

    def __init__(self, proc):
        self.buf, self.proc = bytearray(), proc
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while chunk := self.proc.stderr.read1(4096):
            self.buf.extend(chunk)

    def text(self) -> str:
        self.thread.join(10)
        return self.buf.decode(errors="replace")


def _sigint_default() -> None:
    """In the child before exec: a shell that starts jobs in the background (CI under nohup, `cmd &`) hands them
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler; a terminal's Ctrl-C finds it default."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(proc) -> float:
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group (workers included); the seconds the
    process then took to exit."""
    t = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    return time.time() - t


def _group_gone(pgid: int, timeout: float = 5.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_stops_reproduce_at_once_and_keeps_what_finished(mini_model, mini_masks, tmp_path, capsys):
    """SIGINT after the first results: exit 130 within seconds, one line and no traceback (the workers ignore
    it and are terminated), none of the processes left, the finished rows in the cache; a re-run continues."""
    import pandas as pd

    out = tmp_path / "out"
    args = ["reproduce", "--model", str(mini_model), "--masks", str(mini_masks), "--only", "lambda", "--fast",
            "--out", str(out)]
    proc = subprocess.Popen(_cli(*args, "--workers", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), start_new_session=True, preexec_fn=_sigint_default)
    err = _Stderr(proc)
    try:
        end = time.time() + 180
        while not re.search(rb"evaluations:.*?\| *[1-9]\d*/9 ", bytes(err.buf)):
            assert proc.poll() is None and time.time() < end, err.text()[-3000:]
            time.sleep(0.02)
        took = _interrupt(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = err.text()
    assert proc.returncode == 130, text[-3000:]
    assert took < 8, took
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    cache = out / "cache" / "evals.csv"
    lines = [l for l in re.split(r"[\r\n]", text) if l.strip()]
    assert lines[-1] == f"interrupted: finished evaluations are kept in {cache}; run it again to continue", lines
    assert sum(l.startswith(("interrupted", "error")) for l in lines) == 1
    assert _group_gone(proc.pid), "worker processes outlived the interrupt"
    kept = pd.read_csv(cache)
    assert 1 <= len(kept) < 9 and kept["key"].is_unique
    assert main([*args, "--workers", "1", "--quiet"]) == 0
    assert f"{len(kept)} cached, {9 - len(kept)} to run" in capsys.readouterr().err
    assert len(pd.read_csv(cache)) == 9


def test_ctrl_c_in_train_keeps_the_checkpoint_and_the_same_command_resumes(mini_model, tmp_path, monkeypatch,
                                                                          capsys):
    """SIGINT once a checkpoint exists: exit 130, one line naming the run folder; running the same command
    again resumes to the very mask an uninterrupted run learns."""
    args = ["train", "--task", "gr", "--model", str(mini_model), "--recipe", "paper", "--steps", "300",
            "--batch-size", "2", "--n-train", "8", "--out", "gr.safetensors", "--quiet"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir()
    cut.mkdir()
    monkeypatch.chdir(whole)
    assert main(args) == 0
    capsys.readouterr()

    proc = subprocess.Popen(_cli(*args), cwd=cut, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(),
                            start_new_session=True, preexec_fn=_sigint_default)
    err = _Stderr(proc)
    try:
        end = time.time() + 180
        while not list(cut.glob("runs/*/checkpoint.pt")):
            assert proc.poll() is None and time.time() < end, err.text()[-3000:]
            time.sleep(0.01)
        _interrupt(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = err.text()
    assert proc.returncode == 130, text[-3000:]
    (run,) = cut.glob("runs/*")
    assert text.splitlines() == [f"interrupted: the run folder runs/{run.name} keeps the last checkpoint; "
                                 "run the same command to resume"], text
    assert not (cut / "gr.safetensors").exists()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert 100 <= len(lines) < 300  # stopped between the first checkpoint and the end

    monkeypatch.chdir(cut)
    assert main(args) == 0
    a, b = HeadMask.load(whole / "gr.safetensors"), HeadMask.load(cut / "gr.safetensors")
    assert np.array_equal(a.logits, b.logits)


def test_an_interrupt_typer_swallows_still_prints_its_line(monkeypatch, capsys):
    """Typer answers a Ctrl-C outside a command (while parsing) with a silent exit 130: main() adds the line."""
    import aha_interp.cli as cli

    monkeypatch.setattr(cli, "app", lambda **kw: 130)
    assert cli.main(["info"]) == 130
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("interrupted: ")
