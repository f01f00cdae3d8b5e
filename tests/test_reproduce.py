"""`aha-interp reproduce` end to end on the miniature LALM, with a micro plan: every table and figure is written,
a re-run evaluates nothing, and changing one mask re-evaluates exactly what depends on it."""

import json

import numpy as np
import pandas as pd
import pytest

from aha_interp import HeadMask
from aha_interp.cli import main
from aha_interp.reproduce.paper import (EXPERIMENTS, FAST, FULL, Plan, build_mask, mask_file, mask_specs, plan_jobs,
                                        reproduce)

MICRO = Plan(n_table=3, n_prompt=2, prompts_per_type=1, prompt_tasks=("gr", "asr"), topk_tasks=("asr",),
             topk_fractions=(0.0, 0.5, 1.0), topk_random_seeds=(1,), n_topk=2, n_lambda=2, n_seeds=2, n_algebra=2,
             name="micro")

FIGURES = ["fig2_prompt_sensitivity", "fig3_jaccard", "fig4_topk", "fig5_lambda", "seeds", "algebra",
           "layer_profiles", "masks"]
TABLES = ["single_task", "single_task_summary", "composite", "prompt_sensitivity", "jaccard_tiny",
          "jaccard_tiny_corrected", "topk", "lambda", "seeds", "seed_overlap", "algebra"]


@pytest.fixture(scope="module")
def mini_masks(tmp_path_factory):
    """Random-logit masks for the miniature model (2 layers x 8 heads), one per mask the experiments need."""
    folder = tmp_path_factory.mktemp("masks")
    rng = np.random.default_rng(0)
    for spec in mask_specs():
        path = mask_file(spec["name"], folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        HeadMask(rng.normal(1.0, 2.0, size=(2, 8)).astype(np.float32), task=spec["task"], seed=spec["seed"],
                 lam=spec["lam"]).save(path)
    return folder


@pytest.fixture(scope="module")
def first_run(mini_model, mini_masks, tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    res = reproduce(out, mask_dir=mini_masks, model=str(mini_model), workers=1, plan=MICRO, progress=False,
                    experiments=tuple(e for e in EXPERIMENTS if e != "salmonn"), log=lambda m: None)
    return out, res


def test_every_figure_and_table_is_written(first_run):
    out, res = first_run
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (out / "embedded" / f"{name}.{ext}").stat().st_size > 1000, name
    for name in TABLES:
        for ext in ("csv", "md"):
            assert (out / "tables" / f"{name}.{ext}").exists(), name
    single = pd.read_csv(out / "tables" / "single_task.csv")
    assert {"task", "condition", "metric", "value", "n"} <= set(single.columns)
    assert len(single) == 40 and set(single["condition"]) == {"instruction", "none", "random", "mask"}
    assert (single["n"] == 3).all()
    record = json.loads((out / "cache" / "last_run.json").read_text())
    assert record["mode"] == "micro" and record["evaluated_now"] == res["ran"] > 0


def test_results_are_consistent(first_run, mini_masks):
    out, res = first_run
    tk = pd.read_csv(out / "tables" / "topk.csv")
    # all heads on is the unmasked model: the same score as no instruction on the same clips
    ev = pd.read_csv(out / "cache" / "evals.csv")
    all_on = ev[(ev["mask"] == "top:asr:1") & (ev["n"] == MICRO.n_topk)]["value"].item()
    none = ev[(ev["task"] == "asr") & (ev["condition"] == "none") & (ev["n"] == MICRO.n_topk)]["value"].item()
    assert all_on == none
    assert sorted(tk[tk["kind"] == "topk"]["n_active"]) == [0, 8, 16]
    # random masks of the same size as the top-k mask they shadow
    rnd = tk[tk["kind"] == "random"]
    assert (rnd["n_active"] == 8).all()
    # the seed table's intersection is the intersection of the three seed masks
    seeds = pd.read_csv(out / "tables" / "seeds.csv")
    inter = build_mask("and:gr,gr-s1,gr-s2", mini_masks)
    ms = [HeadMask.load(mask_file(n, mini_masks)) for n in ("gr", "gr-s1", "gr-s2")]
    assert inter == ms[0] & ms[1] & ms[2]
    assert seeds[(seeds["task"] == "gr") & (seeds["mask_label"] == "∩")]["n_active"].item() == inter.n_active
    lam = pd.read_csv(out / "tables" / "lambda.csv")
    assert sorted(lam["lam"]) == sorted([0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])


def test_rerun_evaluates_only_what_changed(first_run, mini_model, mini_masks, tmp_path):
    out, _ = first_run
    kw = dict(mask_dir=mini_masks, model=str(mini_model), workers=1, plan=MICRO, progress=False, log=lambda m: None)
    before = {p.name: p.read_bytes() for p in (out / "tables").glob("*.md")}
    again = reproduce(out, experiments=("table", "algebra"), **kw)
    assert again["ran"] == 0
    after = {p.name: p.read_bytes() for p in (out / "tables").glob("*.md")}
    assert after == before  # tables rebuilt from the cache are byte-identical
    # retraining that changes the json mask's bits re-evaluates exactly the jobs that use it
    path = mask_file("json", mini_masks)
    old = HeadMask.load(path)
    try:
        HeadMask(-old.logits, task="json").save(path)
        changed = reproduce(out, experiments=("table", "algebra"), **kw)
        uses_json = [j for js in plan_jobs(MICRO, ("table", "algebra")).values() for j in js if "json" in j.mask]
        assert changed["ran"] == len(set(uses_json)) == 3  # table: mask + random; algebra: the json mask
    finally:
        old.save(path)


def test_missing_masks_give_one_line_error(tmp_path, capsys):
    assert main(["reproduce", "--masks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--retrain" in err
    assert not (tmp_path / "o").exists()
    assert main(["reproduce", "--only", "nonsense", "--out", str(tmp_path / "o")]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_plans_cover_the_paper():
    full = plan_jobs(FULL)
    assert len({j.prompt_type for j in full["prompts"]}) == 7 and FULL.prompts_per_type == 5
    assert {j.task for j in full["topk"]} == {"asr", "osr", "aac", "s2tt"}
    assert len(FULL.topk_fractions) == 11 and FULL.topk_fractions[0] == 0 and FULL.topk_fractions[-1] == 1
    assert FAST.n_table < FULL.n_table
    names = {s["name"] for s in mask_specs()}
    assert len(names) == 36 and {"asr", "asr-s1", "asr-s2", "gr-lam1e-03"} <= names


def test_a_jobs_clips_do_not_depend_on_what_the_worker_ran_before(monkeypatch):
    from aha_interp.data.tasks import make_examples
    from aha_interp.reproduce import paper

    # the reason for the pool: a smaller draw is not a prefix of a larger one
    assert not np.array_equal(make_examples("gr", 2, seed=0, split="test")[0].audio,
                              make_examples("gr", 4, seed=0, split="test")[0].audio)
    monkeypatch.setattr(paper, "_WORKER", {"examples": {}})
    small_first = [e.audio for e in paper._examples("gr", 2, 0, pool=4)]
    monkeypatch.setattr(paper, "_WORKER", {"examples": {}})
    paper._examples("gr", 4, 0, pool=4)
    large_first = [e.audio for e in paper._examples("gr", 2, 0, pool=4)]
    assert all(np.array_equal(a, b) for a, b in zip(small_first, large_first))
    assert all(j.pool == FULL.n_table for js in plan_jobs(FULL).values() for j in js)
