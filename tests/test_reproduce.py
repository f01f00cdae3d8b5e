"""`aha-interp reproduce`: mask references, the experiment registry, and the run end to end on the miniature
LALM with a micro plan: every table and figure is written, a re-run evaluates nothing, and changing one mask
re-evaluates exactly what depends on it."""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aha_interp import HeadMask
from aha_interp.cli import main
from aha_interp.data.tasks import ALL_TASKS
from aha_interp.errors import AhaError
from aha_interp.reproduce import engine
from aha_interp.reproduce.engine import EvalJob, job_keys
from aha_interp.reproduce.experiments import (REGISTRY, Experiment, LambdaSweep, MaskAlgebra, Outputs, SeedMasks,
                                              TopKSweep, committed_masks)
from aha_interp.reproduce.masks import (Combined, Predicted, PredictorFile, RandomLike, RandomTopK, TopK, Trained,
                                       build_mask, loader)
from aha_interp.reproduce.paper import EXPERIMENTS, FAST, FULL, Plan, reproduce

MICRO = Plan(n_table=3, n_prompt=2, prompts_per_type=1, prompt_tasks=("gr", "asr"), topk_tasks=("asr",),
             topk_fractions=(0.0, 0.5, 1.0), topk_random_seeds=(1,), n_topk=2, n_lambda=2, n_seeds=2, n_algebra=2,
             n_wording=2, name="micro")

FIGURES = ["fig2_prompt_sensitivity", "fig3_jaccard", "fig4_topk", "fig5_lambda", "seeds", "algebra",
           "layer_profiles", "masks", "distilled", "distilled_wordings", "fig2_predicted", "mask_agreement"]
TABLES = ["single_task", "single_task_summary", "composite", "prompt_sensitivity", "jaccard_tiny",
          "jaccard_tiny_corrected", "topk", "lambda", "seeds", "seed_overlap", "algebra", "distilled",
          "distilled_summary", "distilled_wordings", "distilled_wordings_spread", "predicted_masks",
          "predicted_masks_summary", "mask_agreement"]
ASR, GR = Trained("asr"), Trained("gr")


def all_jobs(plan, names=EXPERIMENTS):
    return [j for n in names for j in REGISTRY[n].jobs(plan)]


# --------------------------------------------------------------------------------------------- mask references
def test_committed_masks_are_named_and_filed_by_their_fields(tmp_path):
    cases = {Trained("asr"): ("asr", "asr.safetensors"),
             Trained("asr_gr"): ("asr_gr", "asr_gr.safetensors"),
             Trained("asr", seed=1): ("asr-s1", "seeds/asr-s1.safetensors"),
             Trained("gr_asr", seed=2): ("gr_asr-s2", "seeds/gr_asr-s2.safetensors"),
             Trained("gr", lam=1e-3): ("gr-lam1e-03", "lambda/gr-lam1e-03.safetensors"),
             Trained("gr", lam=3e-2): ("gr-lam3e-02", "lambda/gr-lam3e-02.safetensors"),
             Trained("json", paper=True): ("json-paper", "paper/json.safetensors"),
             Trained("gr", lam=0.0, paper=True): ("gr-paper", "paper/gr.safetensors")}
    for ref, (name, file) in cases.items():
        assert str(ref) == name and ref.path(tmp_path) == tmp_path / file and ref.committed == (ref,)
    assert Trained("gr", lam=0.0) == GR and str(Trained("gr", seed=0)) == "gr"
    # the seed-0 label masks are the default recipe's; every other committed mask is the official recipe's
    assert GR.recipe == "validated" and Trained("gr", paper=True).recipe == "paper"
    assert all(r.recipe == "paper" for r in (Trained("gr", seed=1), Trained("gr", lam=1e-3),
                                             Trained("gr", distilled="seen0")))
    assert Trained("gr", seed=1) == Trained("gr", seed=1, paper=True)  # one mask, one reference
    with pytest.raises(AhaError):
        Trained("gr", seed=1, lam=1e-3)  # no committed mask varies both; its name would be ambiguous


def test_derived_masks_print_their_cache_names():
    cases = {TopK(ASR, 0.3): "top:asr:0.3", TopK(ASR, 3 / 10): "top:asr:0.3", TopK(ASR, 1.0): "top:asr:1",
             TopK(ASR, 0): "top:asr:0", TopK(ASR, 0.25): "top:asr:0.25",
             RandomTopK(ASR, 0.7000000000000001, 2): "rand:asr:0.7:2",
             RandomLike(Trained("json"), 0): "randlike:json:0",
             Combined("and", (ASR, Trained("asr", seed=1), Trained("asr", seed=2))): "and:asr,asr-s1,asr-s2",
             Combined("or", (ASR, GR)): "or:asr,gr", Combined("sub", (GR, ASR)): "sub:gr,asr"}
    for ref, name in cases.items():
        assert str(ref) == name
    assert TopK(ASR, 0.30000000000000004) == TopK(ASR, 0.3)  # the mask is the one its name says
    assert RandomTopK(Trained("osr"), 0.5, 1).committed == (Trained("osr"),)
    assert Combined("sub", [GR, ASR]).committed == (GR, ASR)
    with pytest.raises(AhaError):
        Combined("xor", (ASR, GR))


def _legacy_build(expr: str, mask_dir: Path) -> HeadMask:
    """The string mini-language the references replace, as it was, to check they build the same masks."""
    def load(name):
        if name.endswith("-paper"):  # the official recipe's seed-0 mask, under its task's name
            return HeadMask.load(mask_dir / "paper" / f"{name.removesuffix('-paper')}.safetensors")
        sub = "distilled" if "-distil-" in name else "lambda" if "-lam" in name else "seeds" if "-s" in name else ""
        return HeadMask.load(mask_dir / sub / f"{name}.safetensors")

    if ":" not in expr:
        return load(expr).binary()
    op, rest = expr.split(":", 1)
    if op in ("and", "or", "sub"):
        masks = [load(n).binary() for n in rest.split(",")]
        out = masks[0]
        for m in masks[1:]:
            out = out & m if op == "and" else out | m if op == "or" else out - m
        return out
    parts = rest.split(":")
    if op == "top":
        return load(parts[0]).top_k(fraction=float(parts[1]))
    if op == "rand":
        return load(parts[0]).top_k(fraction=float(parts[1])).random_like(seed=int(parts[2]))
    assert op == "randlike"
    return load(parts[0]).binary().random_like(seed=int(parts[1]))


@pytest.mark.parametrize("plan", [FULL, FAST], ids=["full", "fast"])
def test_every_planned_mask_builds_as_its_name_did(plan, mini_masks):
    refs = {j.mask for j in all_jobs(plan) if j.mask}
    kinds = {type(r) for r in refs}
    assert kinds == {Trained, TopK, RandomTopK, RandomLike, Combined, Predicted}
    refs = {r for r in refs if not isinstance(r, Predicted)}  # made by a predictor on the model: tested below
    cache = {}
    for ref in refs:
        assert build_mask(ref, mini_masks, cache) == _legacy_build(str(ref), mini_masks), str(ref)
    assert set(cache) == {m for r in refs for m in r.committed}  # each committed file read once


def test_a_predicted_mask_is_its_predictors_mask_for_the_wording(mini_model, mini_masks):
    from aha_interp.data.prompts import eval_prompts
    from aha_interp.models.lalm import load_model
    from aha_interp.training.predictor import Predictor

    ref = Predicted(PredictorFile("masks-without-gr"), "gr", "synonyms_complex", 2)
    assert str(ref) == "pred:masks-without-gr:gr/synonyms_complex2" and ref.committed == (ref.source,)
    assert ref.instruction == eval_prompts("gr", "synonyms_complex")[2]
    lalm = load_model(mini_model)
    direct = Predictor.load(ref.source.path(mini_masks)).predict(lalm, ref.instruction).binary()
    assert build_mask(ref, mini_masks, model=str(mini_model)) == direct
    with pytest.raises(AhaError, match="need the model"):
        build_mask(ref, mini_masks)
    assert PredictorFile("masks-without-gr").train_args == ["--method", "masks", "--holdout", "gr"]
    d = Trained("asr", distilled="general3")
    assert str(d) == "asr-distil-general3" and d.path("M") == Path("M/distilled/asr-distil-general3.safetensors")
    assert d.instruction == eval_prompts("asr", "general")[3] and Trained("asr").instruction is None
    for bad in ("general9", "nonsense0", "seen"):
        with pytest.raises(AhaError):
            Trained("asr", distilled=bad)


def test_a_missing_mask_is_a_one_line_error(tmp_path):
    with pytest.raises(AhaError, match="--retrain"):
        loader(tmp_path)(Trained("asr", seed=1))


# --------------------------------------------------------------------------------------------- jobs and cache keys
def test_job_key_is_the_hash_of_the_jobs_fields_with_the_mask_by_name():
    job = EvalJob("asr_gr", "mask", Combined("sub", (ASR, GR)), n=100, pool=200)
    fields = dict(task="asr_gr", condition="mask", mask="sub:asr,gr", prompt_type="seen", prompt_index=-1, n=100,
                  seed=0, pool=200)
    assert job.record() == fields
    legacy = hashlib.sha256(json.dumps([fields, "MODEL", ["FA", "FG"]], sort_keys=True).encode()).hexdigest()[:20]
    assert job.key("MODEL", {ASR: "FA", GR: "FG"}) == legacy
    plain = EvalJob("gr", "none", n=5)
    assert plain.record()["mask"] == "" and plain.committed == ()
    assert plain.key("MODEL", {}) == hashlib.sha256(json.dumps([{**asdict(plain), "mask": ""}, "MODEL", []],
                                                               sort_keys=True).encode()).hexdigest()[:20]


def test_the_committed_cache_holds_every_job_of_the_full_plan():
    """The committed figures/ are built from figures/cache/evals.csv: every full-plan job must find its row there
    (keys computed as when the cache was written), or `reproduce` would re-evaluate it."""
    root = Path(__file__).resolve().parents[1]
    cache, mask_dir = root / "figures" / "cache" / "evals.csv", root / "masks" / "tiny"
    if not cache.exists() or not all(m.path(mask_dir).exists() for m in committed_masks()):
        pytest.skip("no committed cache or masks in this checkout")
    keys = set(pd.read_csv(cache, usecols=["key"])["key"])
    jobs = all_jobs(FULL)
    missing = [j for j, k in zip(jobs, job_keys(jobs, "tiny", mask_dir)) if k not in keys]
    assert not missing, f"{len(missing)} jobs not in the cache, e.g. {missing[0]}"


# --------------------------------------------------------------------------------------------- experiments
def test_the_registry_holds_every_experiment():
    assert EXPERIMENTS == tuple(REGISTRY) == ("table", "composite", "prompts", "jaccard", "topk", "lambda", "seeds",
                                              "algebra", "layers", "distilled", "wordings", "predictor", "salmonn")
    for name, e in REGISTRY.items():
        assert e.name == name and type(e).outputs is not Experiment.outputs
    with_jobs = {n for n, e in REGISTRY.items() if e.jobs(FULL)}
    assert with_jobs == {"table", "composite", "prompts", "topk", "lambda", "seeds", "algebra", "distilled",
                         "wordings", "predictor"}
    assert REGISTRY["jaccard"].masks(FULL) == [Trained(t) for t in ALL_TASKS]
    assert REGISTRY["salmonn"].masks(FULL) == []


def test_plans_cover_the_paper():
    jobs = {n: e.jobs(FULL) for n, e in REGISTRY.items()}
    assert len({j.prompt_type for j in jobs["prompts"] if j.prompt_index >= 0}) == 7 and FULL.prompts_per_type == 5
    assert {j.task for j in jobs["topk"]} == {"asr", "osr", "aac", "s2tt"}
    assert len(FULL.topk_fractions) == 11 and FULL.topk_fractions[0] == 0 and FULL.topk_fractions[-1] == 1
    assert FAST.n_table < FULL.n_table
    # the composite and prompt experiments read rows of the table; the cache evaluates each once
    assert set(jobs["composite"]) <= set(jobs["table"])
    assert {j for j in jobs["prompts"] if j.prompt_index < 0} <= set(jobs["table"])
    # the distilled and predictor experiments read the table's rows and the held-out wordings' rows
    # … of the official recipe's masks (the distilled masks' and the predictor's), beside the table's baselines
    assert {j for j in jobs["table"] if j.condition in ("instruction", "none")} <= set(jobs["distilled"])
    assert {str(j.mask) for j in jobs["distilled"] if j.condition == "mask"} == \
        {f"{t}-{kind}" for t in ALL_TASKS for kind in ("paper", "distil-seen0")}
    assert {j for j in jobs["prompts"] if j.prompt_index >= 0} <= set(jobs["predictor"])
    # + 20: the official recipe's mask and its random mask per task (distilled, predictor); + 3: the seeds' s0 on
    # the composite tasks, which the algebra's default-recipe mask no longer shares
    assert len(set(all_jobs(FULL))) == 627 + 20 + 4 + 1050 + 20 + 3
    names = [str(m) for m in committed_masks()]
    assert len(names) == len(set(names)) == 10 + 36 + 11 + 12
    assert {"asr", "asr-paper", "asr-s1", "asr-s2", "gr-lam1e-03"} <= set(names)
    assert names[:20] == list(ALL_TASKS) + [f"{t}-paper" for t in ALL_TASKS]  # the default recipe's first
    assert names[46:48] == ["asr-distil-seen0", "gr-distil-seen0"] and names[-1] == "predictor-objective"
    assert [str(m) for m in committed_masks(["lambda"])] == ["gr-paper", "gr-lam1e-04", "gr-lam3e-04", "gr-lam1e-03",
                                                             "gr-lam3e-03", "gr-lam1e-02", "gr-lam3e-02"]


def _rows(jobs, **values):
    """A synthetic rows frame for ``jobs``: their fields, and the same scores for every row."""
    base = dict(metric="accuracy", value=0.5, ci_low=0.4, ci_high=0.6, higher_is_better=True, n_active=8.0,
                n_heads=16.0, wer_compliant=np.nan, accuracy_compliant=np.nan, prompt="", seconds=0.1)
    return pd.DataFrame([{**j.record(), **base, **values} for j in jobs])


def test_experiment_labels_come_from_the_mask_references():
    assert [TopKSweep.kind(*a) for a in [("asr", "mask", "top:asr:0.5"), ("asr", "mask", "asr"),
                                         ("asr", "random", "rand:asr:0.5:1"), ("asr", "instruction", "")]] == \
        ["topk", "threshold", "random", "instruction"]
    seeds = SeedMasks()
    assert [seeds.label("gr", "mask", m) for m in ("gr-paper", "gr-s1", "gr-s2", "and:gr-paper,gr-s1,gr-s2")] == \
        ["s0", "s1", "s2", "∩"]
    assert seeds.label("gr", "none", "") == "none"
    algebra = MaskAlgebra()
    assert [algebra.label("mask", m) for m in ("asr", "or:asr,gr", "sub:gr,asr", "json")] == \
        ["ASR mask", "ASR ∪ GR", "GR − ASR", "composite mask (trained)"]
    assert algebra.label("none", "") == "no instruction"


def test_lambda_outputs_from_synthetic_rows(tmp_path, mini_masks):
    exp = LambdaSweep()
    rows = _rows(exp.jobs(MICRO))
    out = Outputs(tmp_path, mini_masks)
    exp.outputs(rows, out)
    table = pd.read_csv(tmp_path / "tables" / "lambda.csv")
    assert list(table["lam"]) == list(exp.lams) and list(table["mask"])[:2] == ["gr-paper", "gr-lam1e-04"]
    assert {p.name for p in out.written} == {"lambda.csv", "lambda.md", "fig5_lambda.png", "fig5_lambda.pdf"}


def test_seed_outputs_from_synthetic_rows(tmp_path, mini_masks):
    exp = SeedMasks()
    exp.outputs(_rows(exp.jobs(MICRO)), Outputs(tmp_path, mini_masks))
    seeds = pd.read_csv(tmp_path / "tables" / "seeds.csv", keep_default_na=False)
    assert list(seeds["mask_label"][:5]) == ["s0", "s1", "s2", "∩", "none"] and len(seeds) == 5 * len(ALL_TASKS)
    overlap = pd.read_csv(tmp_path / "tables" / "seed_overlap.csv").set_index("task")
    ms = [HeadMask.load(m.path(mini_masks)) for m in exp.of("gr")]
    assert overlap.loc["gr", "intersection_active"] == (ms[0] & ms[1] & ms[2]).n_active
    assert overlap.loc["gr", "active_per_seed"] == " / ".join(str(m.n_active) for m in ms)


def test_outputs_without_labels_from_synthetic_rows(tmp_path, mini_masks, mini_model):
    from aha_interp.reproduce.experiments import DistilledMasks, DistilledWordings, PredictedMasks

    out = Outputs(tmp_path, mini_masks, model=str(mini_model))
    for exp in (DistilledMasks(), DistilledWordings(), PredictedMasks()):
        jobs = exp.jobs(MICRO)
        rows = _rows(jobs).assign(value=np.linspace(0.1, 0.9, len(jobs)), ci_low=0.0, ci_high=1.0)
        exp.outputs(rows, out)
    summary = pd.read_csv(tmp_path / "tables" / "distilled_summary.csv")
    assert list(summary["task"]) == list(ALL_TASKS) and "distilled within label CI" in summary
    dist = pd.read_csv(tmp_path / "tables" / "distilled.csv")
    assert set(dist["label"]) == {"instruction", "teacher", "label mask", "distilled mask", "no instruction",
                                  "random mask"}
    wordings = pd.read_csv(tmp_path / "tables" / "distilled_wordings.csv")
    n_types = len(MICRO.wording_types)
    assert len(wordings) == n_types * len(MICRO.wording_tasks) and list(wordings["prompt_type"][:n_types]) == \
        list(MICRO.wording_types)
    assert (wordings["distilled"] > wordings["instruction"]).all()  # each mask's row follows its wording's
    pred = pd.read_csv(tmp_path / "tables" / "predicted_masks.csv")
    assert len(pred) == 7 * MICRO.prompts_per_type * len(MICRO.prompt_tasks)
    assert {"instruction", "objective", "masks", "held-out task"} <= set(pred.columns)
    summ = pd.read_csv(tmp_path / "tables" / "predicted_masks_summary.csv")
    assert list(summ["task"]) == list(MICRO.prompt_tasks) and "objective / trained" in summ
    agree = pd.read_csv(tmp_path / "tables" / "mask_agreement.csv")
    assert set(agree["pair"]) == {"label–distilled", "label–predicted", "distilled–predicted"}
    assert ((agree["jaccard"] >= 0) & (agree["jaccard"] <= 1)).all()
    assert {p.stem for p in out.written if p.suffix == ".png"} == {"distilled", "distilled_wordings",
                                                                   "fig2_predicted", "mask_agreement"}


# --------------------------------------------------------------------------------------------- end to end
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
    composite = pd.read_csv(out / "tables" / "composite.csv")
    assert list(composite["task"]) == ["asr_gr", "asr_gr", "gr_asr", "gr_asr", "json", "json"]
    assert set(res["results"]) == set(EXPERIMENTS) - {"salmonn"}
    record = json.loads((out / "cache" / "last_run.json").read_text())
    assert record["mode"] == "micro" and record["evaluated_now"] == res["ran"] == len(set(all_jobs(MICRO))) > 0


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
    gr_seeds = SeedMasks().of("gr")
    inter = build_mask(Combined("and", gr_seeds), mini_masks)
    ms = [HeadMask.load(m.path(mini_masks)) for m in gr_seeds]
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
    path = Trained("json").path(mini_masks)
    old = HeadMask.load(path)
    try:
        HeadMask(-old.logits, task="json").save(path)
        changed = reproduce(out, experiments=("table", "algebra"), **kw)
        uses_json = [j for j in all_jobs(MICRO, ("table", "algebra")) if Trained("json") in j.committed]
        assert changed["ran"] == len(set(uses_json)) == 3  # table: mask + random; algebra: the json mask
    finally:
        old.save(path)


def test_missing_masks_give_one_line_error(tmp_path, capsys):
    assert main(["reproduce", "--masks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--retrain" in err and "69 mask(s)" in err
    assert not (tmp_path / "o").exists()
    assert main(["reproduce", "--only", "nonsense", "--out", str(tmp_path / "o")]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_a_jobs_clips_do_not_depend_on_what_the_worker_ran_before(monkeypatch):
    from aha_interp.data.tasks import make_examples

    # the reason for the pool: a smaller draw is not a prefix of a larger one
    assert not np.array_equal(make_examples("gr", 2, seed=0, split="test")[0].audio,
                              make_examples("gr", 4, seed=0, split="test")[0].audio)
    monkeypatch.setattr(engine, "_WORKER", {"examples": {}})
    small_first = [e.audio for e in engine._examples("gr", 2, 0, pool=4)]
    monkeypatch.setattr(engine, "_WORKER", {"examples": {}})
    engine._examples("gr", 4, 0, pool=4)
    large_first = [e.audio for e in engine._examples("gr", 2, 0, pool=4)]
    assert all(np.array_equal(a, b) for a, b in zip(small_first, large_first))
    assert all(j.pool == FULL.n_table for j in all_jobs(FULL))
