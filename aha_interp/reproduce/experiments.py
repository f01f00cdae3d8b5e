"""The paper's experiments on the tiny LALM, one object each, in :data:`REGISTRY`.

An experiment lists the evaluations it needs (``jobs(plan)``), the committed masks it reads (``masks(plan)``),
and writes its tables and figures from the rows of its jobs, one row per job in order
(``outputs(rows, out)``). Experiments may share jobs; the engine evaluates each once.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.prompts import VARIATION_TYPES
from ..data.tasks import ALL_TASKS, COMPOSITE_TASKS
from ..errors import AhaError
from ..masks import HeadMask
from .engine import EvalJob
from .masks import Combined, Predicted, PredictorFile, RandomLike, RandomTopK, TopK, Trained, loader


@dataclass(frozen=True)
class Plan:
    """How many clips each experiment evaluates, and which sweeps it runs."""

    n_table: int = 200
    n_prompt: int = 20  # clips per held-out prompt (Fig. 2); the same clips for every prompt of a task
    prompts_per_type: int = 5
    prompt_tasks: tuple = ALL_TASKS
    topk_tasks: tuple = ("asr", "osr", "aac", "s2tt")  # the paper's four non-classification tasks
    topk_fractions: tuple = tuple(i / 10 for i in range(11))
    topk_random_seeds: tuple = (1, 2, 3)
    n_topk: int = 50
    n_lambda: int = 200
    n_seeds: int = 100
    n_algebra: int = 100
    n_wording: int = 100  # clips per held-out wording: the wording as an instruction and the mask distilled from it
    wording_tasks: tuple = ("gr",)
    # the first wording of these types: the teacher of the distilled masks (seen, GR 1.00 as an instruction) and the
    # held-out wording that breaks GR most (capitalisation, 0.00 in Fig. 2)
    wording_types: tuple = ("seen", "capitalisation")
    seed: int = 0
    name: str = "full"


FULL = Plan()
FAST = Plan(n_table=24, n_prompt=4, prompts_per_type=2, prompt_tasks=("asr", "gr", "ser", "s2tt"),
            topk_tasks=("asr", "s2tt"), topk_fractions=(0.0, 0.25, 0.5, 0.75, 1.0), topk_random_seeds=(1,),
            n_topk=12, n_lambda=24, n_seeds=16, n_algebra=16, n_wording=12, name="fast")


class Outputs:
    """Where experiments write their tables (``DIR/tables/``) and figures (``DIR/embedded/``), and the committed
    masks they read; ``written`` collects the paths."""

    def __init__(self, out: Path, mask_dir: Path, *, fast: bool = False, salmonn_masks: str | None = None,
                 model: str = "tiny", log=print):
        import matplotlib

        matplotlib.use("Agg")
        self.out, self.fast, self.salmonn_masks, self.log = Path(out), fast, salmonn_masks, log
        self.mask = loader(mask_dir, model=model)  # a committed mask as trained (logits), each file read once
        self.written: list[Path] = []

    def table(self, df: pd.DataFrame, name: str, formats=("csv", "md"), **kw) -> None:
        from ..tables import write_tables

        self.written += write_tables(df, self.out / "tables" / name, formats=formats, **kw)

    def figure(self, fig, name: str) -> None:
        import matplotlib.pyplot as plt

        from ..plots import save_figure

        if self.fast:
            fig.text(0.005, 0.995, "fast mode: few clips per point", ha="left", va="top", fontsize=7, color="red")
        self.written += save_figure(fig, self.out / "embedded" / name, formats=("png", "pdf"))
        plt.close(fig)

    def singles(self) -> dict[str, HeadMask]:
        """The seed-0, λ-0 mask of every task, named by its task."""
        return {t: self.mask(Trained(t)).with_meta(task=t) for t in ALL_TASKS}


class Experiment:
    """The evaluations an experiment needs, and the tables and figures it makes of their rows."""

    name = ""

    def jobs(self, plan: Plan) -> list[EvalJob]:
        return []

    def masks(self, plan: Plan) -> list[Trained]:
        """The committed masks it reads: those its jobs use."""
        return [m for j in self.jobs(plan) for m in j.committed]

    def outputs(self, rows: pd.DataFrame, out: Outputs) -> None:
        raise NotImplementedError


def _job(plan: Plan, task: str, condition: str, mask=None, *, n: int, **kw) -> EvalJob:
    # every job draws its clips from the same pool per (task, seed): the table's n_table clips
    return EvalJob(task, condition, mask, n=n, seed=plan.seed, pool=plan.n_table, **kw)


CONDITIONS = ("instruction", "none", "random", "mask")


def table_job(plan: Plan, task: str, condition: str, paper: bool = False) -> EvalJob:
    """A row of the single-task table: ``task`` under one of :data:`CONDITIONS` (``paper``: the mask, and the random
    mask's size, of the official recipe's mask instead of the default recipe's)."""
    trained = Trained(task, paper=paper)
    mask = {"mask": trained, "random": RandomLike(trained, plan.seed)}.get(condition)
    return _job(plan, task, condition, mask, n=plan.n_table)


def _higher_is_better(task: str) -> bool:
    from ..evaluation.metrics import metric_for

    return metric_for(task).higher_is_better


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """One row per task: the four conditions, and whether AHAMask beats the no-instruction and random-mask
    scores by more than their intervals (the intervals do not overlap), and reaches the paper's goal."""
    rows = []
    for task, g in df.groupby("task", sort=False):
        r = g.set_index("condition")
        higher = _higher_is_better(task)
        m = r.loc["mask"]

        def beats(other):
            o = r.loc[other]
            return bool(m.ci_low > o.ci_high) if higher else bool(m.ci_high < o.ci_low)

        inst = r.loc["instruction", "value"]
        goal = m.value >= 0.9 * inst if higher else m.value <= 1.1 * inst + 0.02
        rows.append({"task": task, "metric": m.metric, "instruction": inst, "none": r.loc["none", "value"],
                     "random": r.loc["random", "value"], "mask": m.value, "n_active": m.n_active, "n": m.n,
                     "mask_beats_none": beats("none"), "mask_beats_random": beats("random"),
                     "mask_reaches_goal": bool(goal)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------- experiments
class SingleTask(Experiment):
    """Table 2 analogue: every task under the four conditions, and a summary of what AHAMask beats."""

    name = "table"
    columns = ["task", "condition", "metric", "value", "ci_low", "ci_high", "n", "n_active", "wer_compliant",
               "accuracy_compliant"]

    def jobs(self, plan):
        return [table_job(plan, t, c) for t in ALL_TASKS for c in CONDITIONS]

    def outputs(self, rows, out):
        out.table(rows[self.columns].round(4), "single_task")
        out.table(summary(rows).round(4), "single_task_summary")


class CompositeTasks(Experiment):
    """The composite tasks' instruction-following rate and sub-metrics, instruction vs AHAMask (table rows)."""

    name = "composite"
    columns = {"task": "task", "condition": "condition", "value": "ifr", "ci_low": "ifr_ci_low",
               "ci_high": "ifr_ci_high", "wer_compliant": "wer", "accuracy_compliant": "gender_accuracy", "n": "n"}

    def jobs(self, plan):
        return [table_job(plan, t, c) for t in COMPOSITE_TASKS for c in ("instruction", "mask")]

    def outputs(self, rows, out):
        out.table(rows[list(self.columns)].rename(columns=self.columns).round(4), "composite")


class PromptSensitivity(Experiment):
    """Fig. 2: each task's score under every held-out prompt, against AHAMask and no instruction."""

    name = "prompts"

    def jobs(self, plan):
        reference = [table_job(plan, t, c) for t in plan.prompt_tasks for c in ("mask", "none")]
        return reference + [_job(plan, t, "instruction", prompt_type=v, prompt_index=i, n=plan.n_prompt)
                            for t in plan.prompt_tasks for v in VARIATION_TYPES for i in range(plan.prompts_per_type)]

    def outputs(self, rows, out):
        from .. import plots

        held_out = rows["prompt_index"] >= 0  # the reference rows cycle over the prompts (-1)
        pr, reference = rows[held_out].reset_index(drop=True), rows[~held_out]
        out.table(pr[["task", "prompt_type", "prompt_index", "prompt", "metric", "value", "n"]].round(4),
                  "prompt_sensitivity")
        spread = pr.groupby(["task", "prompt_type"])["value"].agg(["min", "mean", "max"]).reset_index()
        out.table(spread.round(4), "prompt_sensitivity_summary")
        out.figure(plots.plot_prompt_sensitivity(pr, reference), "fig2_prompt_sensitivity")


class Jaccard(Experiment):
    """Fig. 3: overlap of the single-task masks, raw and chance-corrected."""

    name = "jaccard"

    def masks(self, plan):
        return [Trained(t) for t in ALL_TASKS]

    def outputs(self, rows, out):
        from .. import analysis as an
        from .. import plots

        singles = out.singles()
        out.table(an.jaccard_matrix(singles).round(4), "jaccard_tiny", index=True)
        out.table(an.corrected_jaccard_matrix(singles).round(4), "jaccard_tiny_corrected", index=True)
        out.table(an.overlap_table(singles).round(6), "overlap_pairs_tiny")
        out.figure(plots.plot_jaccard_pair(singles, suptitle="AHAMask overlap on the tiny LALM (128 heads)"),
                   "fig3_jaccard")


class TopKSweep(Experiment):
    """Fig. 4: score vs heads switched on in order of their logit, against random masks of the same sizes."""

    name = "topk"

    def jobs(self, plan):
        return [j for t in plan.topk_tasks for j in self.task_jobs(plan, t)]

    @staticmethod
    def task_jobs(plan: Plan, task: str) -> list[EvalJob]:
        mask, job = Trained(task), functools.partial(_job, plan, task, n=plan.n_topk)
        jobs = [job("mask", TopK(mask, f)) for f in plan.topk_fractions]
        jobs += [job("random", RandomTopK(mask, f, r))
                 for f in plan.topk_fractions if 0 < f < 1 for r in plan.topk_random_seeds]
        return jobs + [job("mask", mask), job("instruction")]

    @staticmethod
    def kind(task: str, condition: str, mask: str) -> str:
        if condition in ("instruction", "random"):
            return condition
        return "threshold" if mask == str(Trained(task)) else "topk"

    def outputs(self, rows, out):
        from .. import plots

        size = rows["n_heads"].dropna().iloc[0]
        tk = rows.assign(kind=[self.kind(*r) for r in zip(rows["task"], rows["condition"], rows["mask"])],
                         percent=100.0 * rows["n_active"].fillna(size) / size)
        out.table(tk[["task", "kind", "mask", "percent", "n_active", "metric", "value", "ci_low", "ci_high", "n"]]
                  .round(4), "topk")
        out.figure(plots.plot_topk_performance(tk), "fig4_topk")


class LambdaSweep(Experiment):
    """Fig. 5: the GR mask trained with each sparsity weight λ: score and heads kept."""

    name = "lambda"
    task = "gr"
    lams = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)

    def jobs(self, plan):
        job = functools.partial(_job, plan, self.task, n=plan.n_lambda)
        return [job("mask", self.mask(l)) for l in self.lams] + [job(c) for c in ("instruction", "none")]

    def mask(self, lam: float) -> Trained:
        return Trained(self.task, lam=lam, paper=True)  # the official recipe's λ (the relaxed gates weigh it otherwise)

    def outputs(self, rows, out):
        from .. import plots

        lam_of = {str(self.mask(l)): l for l in self.lams}
        masked = rows[rows["condition"] == "mask"].assign(lam=lambda d: d["mask"].map(lam_of))
        out.table(masked[["lam", "mask", "n_active", "n_heads", "metric", "value", "ci_low", "ci_high", "n"]]
                  .round(4), "lambda")
        base = rows[rows["condition"] != "mask"].set_index("condition")["value"]
        baselines = {"instruction": base.get("instruction"), "no instruction": base.get("none")}
        out.figure(plots.plot_lambda_ablation(masked, baselines=baselines,
                                              title=f"λ ablation ({self.task}): accuracy and heads kept"),
                   "fig5_lambda")


class SeedMasks(Experiment):
    """Masks trained with three seeds: each one's score, their intersection's, and how much they overlap."""

    name = "seeds"
    seeds = (0, 1, 2)

    def of(self, task: str) -> list[Trained]:
        return [Trained(task, seed=k, paper=True) for k in self.seeds]  # the official recipe's seeds

    def jobs(self, plan):
        jobs = []
        for t in ALL_TASKS:
            job = functools.partial(_job, plan, t, n=plan.n_seeds)
            jobs += [job("mask", m) for m in self.of(t)] + [job("mask", Combined("and", self.of(t))), job("none")]
        return jobs

    def label(self, task: str, condition: str, mask: str) -> str:
        if condition == "none":
            return "none"
        labels = {str(m): f"s{m.seed}" for m in self.of(task)}
        labels[str(Combined("and", self.of(task)))] = "∩"
        return labels[mask]

    def overlap(self, task: str, out: Outputs) -> dict:
        """The seed masks' mean pairwise Jaccard (and its chance level), and the size of their intersection."""
        from .. import analysis as an

        ms = [out.mask(m) for m in self.of(task)]
        pairs = [(a, b) for i, a in enumerate(ms) for b in ms[i + 1:]]
        inter = functools.reduce(operator.and_, ms)
        return {"task": task, "active_per_seed": " / ".join(str(m.n_active) for m in ms),
                "jaccard": float(np.mean([an.jaccard(a, b) for a, b in pairs])),
                "jaccard_chance": float(np.mean([an.expected_jaccard(a.n_active, b.n_active, a.size)
                                                 for a, b in pairs])),
                "intersection_active": inter.n_active, "n_heads": inter.size}

    def outputs(self, rows, out):
        from .. import plots

        sd = rows.assign(mask_label=[self.label(*r) for r in zip(rows["task"], rows["condition"], rows["mask"])])
        out.table(sd[["task", "mask_label", "mask", "n_active", "metric", "value", "ci_low", "ci_high", "n"]]
                  .round(4), "seeds")
        ov = pd.DataFrame([self.overlap(t, out) for t in ALL_TASKS])
        out.table(ov.round(4), "seed_overlap")
        out.figure(plots.plot_seed_masks(sd, ov), "seeds")


class MaskAlgebra(Experiment):
    """The composite tasks under unions, intersections and differences of the ASR and GR masks."""

    name = "algebra"

    @staticmethod
    def operands() -> dict:
        """The masks tried on every composite task, with their labels."""
        asr, gr = Trained("asr"), Trained("gr")
        return {asr: "ASR mask", gr: "GR mask", Combined("or", (asr, gr)): "ASR ∪ GR",
                Combined("and", (asr, gr)): "ASR ∩ GR", Combined("sub", (asr, gr)): "ASR − GR",
                Combined("sub", (gr, asr)): "GR − ASR"}

    def jobs(self, plan):
        job = functools.partial(_job, plan, n=plan.n_algebra)
        jobs = [job(c, "mask", m) for c in COMPOSITE_TASKS for m in (*self.operands(), Trained(c))]
        return jobs + [job(c, k) for c in COMPOSITE_TASKS for k in ("instruction", "none")]

    def label(self, condition: str, mask: str) -> str:
        if condition != "mask":
            return {"instruction": "instruction", "none": "no instruction"}[condition]
        return {str(m): label for m, label in self.operands().items()}.get(mask, "composite mask (trained)")

    def outputs(self, rows, out):
        from .. import plots

        al = rows.assign(label=[self.label(c, m) for c, m in zip(rows["condition"], rows["mask"])])
        out.table(al[["task", "label", "mask", "n_active", "metric", "value", "ci_low", "ci_high", "wer_compliant",
                      "accuracy_compliant", "n"]].round(4), "algebra")
        out.figure(plots.plot_algebra_scores(al), "algebra")


class LayerProfiles(Experiment):
    """Where in the network the single-task masks keep heads: per-layer counts and the masks themselves."""

    name = "layers"

    def masks(self, plan):
        return [Trained(t) for t in ALL_TASKS]

    def outputs(self, rows, out):
        import matplotlib.pyplot as plt

        from .. import analysis as an
        from .. import plots

        singles = out.singles()
        out.table(an.layer_profile(singles), "layer_profile_tiny", formats=("csv",))
        out.figure(plots.plot_layer_profile(singles, title="Heads kept per layer, tiny LALM masks"), "layer_profiles")
        fig, axes = plt.subplots(2, 5, figsize=(16, 4.2), layout="constrained")
        for ax, (name, m) in zip(axes.ravel(), singles.items()):
            plots.plot_mask(m, ax=ax, title=f"{name}: {m.n_active}/{m.size}")
        out.figure(fig, "masks")


class SalmonnMasks(Experiment):
    """``DIR/salmonn/``: figures and tables of the masks released for SALMONN-13B, where they are available."""

    name = "salmonn"

    def outputs(self, rows, out):
        from ..masks.official import official_masks_dir
        from .salmonn import build

        try:
            folder = official_masks_dir(out.salmonn_masks)
        except AhaError as e:
            out.log(f"skipping the SALMONN figures: {e}")
            return
        out.written += build(str(folder), out.out / "salmonn", log=lambda *a: None)


# --------------------------------------------------------------------------------------------- without labels
def _cell(r) -> str:
    """``value [low, high]`` of a row, for the Markdown summaries."""
    return f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


class DistilledMasks(Experiment):
    """Masks without labels: each task's mask distilled from its first training instruction (the teacher) against
    the label-trained mask, the teacher itself, all the training instructions, no instruction and a random mask.
    Both masks are of the official recipe (``paper``): the comparison is labels against the teacher's answers."""

    name = "distilled"

    @staticmethod
    def distilled(task: str) -> Trained:
        return Trained(task, distilled="seen0")

    def jobs(self, plan):
        jobs = []
        for t in ALL_TASKS:
            jobs += [table_job(plan, t, c, paper=True) for c in CONDITIONS]
            jobs += [_job(plan, t, "mask", self.distilled(t), n=plan.n_table),
                     _job(plan, t, "instruction", prompt_index=0, n=plan.n_table)]  # the teacher's wording alone
        return jobs

    @staticmethod
    def label(condition: str, mask: str, prompt_index: int) -> str:
        if condition == "instruction":
            return "teacher" if prompt_index == 0 else "instruction"
        if condition == "mask":
            return "distilled mask" if "-distil-" in mask else "label mask"
        return {"none": "no instruction", "random": "random mask"}[condition]

    def outputs(self, rows, out):
        from .. import plots

        d = rows.assign(label=[self.label(*r) for r in zip(rows["condition"], rows["mask"], rows["prompt_index"])])
        cols = ["task", "label", "metric", "value", "ci_low", "ci_high", "n", "n_active"]
        out.table(d[cols].round(4), "distilled")
        summary_rows = []
        for task, g in d.groupby("task", sort=False):
            r = g.set_index("label")
            lab, dis, tea = r.loc["label mask"], r.loc["distilled mask"], r.loc["teacher"]
            higher = _higher_is_better(task)
            beats_teacher = dis.ci_low > tea.value if higher else dis.ci_high < tea.value
            below_teacher = dis.ci_high < tea.value if higher else dis.ci_low > tea.value
            summary_rows.append({
                "task": task, "metric": lab.metric, **{k: _cell(r.loc[k]) for k in
                                                      ("instruction", "teacher", "label mask", "distilled mask",
                                                       "no instruction", "random mask")},
                "active (label / distilled)": f"{int(lab.n_active)} / {int(dis.n_active)}",
                "distilled within label CI": bool(lab.ci_low <= dis.value <= lab.ci_high),
                "vs teacher": "above" if beats_teacher else "below" if below_teacher else "within CI",
                "n": int(lab.n)})
        out.table(pd.DataFrame(summary_rows), "distilled_summary")
        order = ["instruction", "teacher", "label mask", "distilled mask", "no instruction", "random mask"]
        out.figure(plots.plot_condition_scores(d, order, title="Masks without labels: distilled vs label-trained "
                                                               "(n per point, 95 % CI)"), "distilled")


class DistilledWordings(Experiment):
    """Prompt robustness from distillation: for the first wording of each of ``plan.wording_types`` (``seen``: the
    training instruction; otherwise a held-out variation), that wording as an instruction against the mask
    distilled from it (no instruction in the prompt)."""

    name = "wordings"

    def jobs(self, plan):
        jobs = []
        for t in plan.wording_tasks:
            jobs.append(table_job(plan, t, "mask", paper=True))  # the distilled masks' recipe
            for v in plan.wording_types:
                jobs += [_job(plan, t, "instruction", prompt_type=v, prompt_index=0, n=plan.n_wording),
                         _job(plan, t, "mask", Trained(t, distilled=f"{v}0"), n=plan.n_wording)]
        return jobs

    def outputs(self, rows, out):
        from .. import plots

        ref = rows[(rows["condition"] == "mask") & (rows["mask"] == rows["task"] + "-paper")]  # the label masks
        inst = rows[rows["condition"] == "instruction"].reset_index(drop=True)
        dist = rows[rows["mask"].str.contains("-distil-", regex=False)].reset_index(drop=True)
        dist["prompt_type"] = inst["prompt_type"]  # the jobs pair them: wording, then the mask distilled from it
        table = inst[["task", "prompt_type", "prompt", "metric"]].assign(
            instruction=inst["value"], instruction_ci_low=inst["ci_low"], instruction_ci_high=inst["ci_high"],
            distilled=dist["value"], distilled_ci_low=dist["ci_low"], distilled_ci_high=dist["ci_high"],
            distilled_active=dist["n_active"], n=inst["n"])
        out.table(table.round(4), "distilled_wordings")
        spread = table.groupby("task", sort=False).agg(
            instruction_min=("instruction", "min"), instruction_max=("instruction", "max"),
            distilled_min=("distilled", "min"), distilled_max=("distilled", "max")).reset_index()
        spread = spread.assign(instruction_spread=spread.instruction_max - spread.instruction_min,
                               distilled_spread=spread.distilled_max - spread.distilled_min,
                               label_mask=spread["task"].map(ref.set_index("task")["value"]))
        out.table(spread.round(4), "distilled_wordings_spread")
        prompts = inst.assign(prompt_index=0)
        masks = dist.assign(prompt_index=0)
        out.figure(plots.plot_prompt_sensitivity(
            prompts, ref, masks=masks, masks_label="mask distilled from the wording",
            title="Each held-out wording as an instruction (x) and the mask distilled from it (o)"), "distilled_wordings")


class PredictedMasks(Experiment):
    """A text-to-mask predictor on every held-out wording: the predicted mask with no instruction against the
    wording as an instruction and the task's trained mask; predictors trained by the AHAMask objective
    (``objective``), by regression onto the trained masks (``masks``), and the latter without the task at all
    (``masks-without-<task>``, leave-one-task-out)."""

    name = "predictor"
    methods = ("objective", "masks", "held-out task")

    @staticmethod
    def source(method: str, task: str) -> PredictorFile:
        return PredictorFile(f"masks-without-{task}" if method == "held-out task" else method)

    def masks(self, plan):
        # its jobs' masks, and the distilled masks agreement() compares (so that --retrain --only predictor has them)
        return [*super().masks(plan), *(Trained(t, distilled="seen0") for t in ALL_TASKS)]

    def refs(self, plan) -> list[tuple[str, Predicted]]:
        return [(m, Predicted(self.source(m, t), t, v, i)) for t in plan.prompt_tasks for v in VARIATION_TYPES
                for i in range(plan.prompts_per_type) for m in self.methods]

    def jobs(self, plan):
        self.named = {str(ref): (m, ref) for m, ref in self.refs(plan)}  # outputs() reads the rows' mask names
        # the trained masks of the official recipe: those the masks method regresses onto
        jobs = [table_job(plan, t, c, paper=True) for t in plan.prompt_tasks for c in ("mask", "instruction")]
        jobs += [_job(plan, t, "instruction", prompt_type=v, prompt_index=i, n=plan.n_prompt)
                 for t in plan.prompt_tasks for v in VARIATION_TYPES for i in range(plan.prompts_per_type)]
        return jobs + [_job(plan, ref.task, "mask", ref, n=plan.n_prompt) for _, ref in self.refs(plan)]

    def outputs(self, rows, out):
        from .. import plots

        trained = rows[(rows["condition"] == "mask") & ~rows["mask"].isin(self.named)]
        seen = rows[(rows["condition"] == "instruction") & (rows["prompt_type"] == "seen")].set_index("task")["value"]
        inst = rows[(rows["condition"] == "instruction") & (rows["prompt_type"] != "seen")]
        pred = rows[rows["mask"].isin(self.named)].copy()
        refs = [self.named[m] for m in pred["mask"]]
        pred["method"] = [m for m, _ in refs]
        pred["prompt_type"] = [r.prompt_type for _, r in refs]
        pred["prompt_index"] = [r.prompt_index for _, r in refs]
        keys = ["task", "prompt_type", "prompt_index"]
        wide = inst[keys + ["prompt", "metric", "value"]].rename(columns={"value": "instruction"})
        for m in self.methods:
            p = pred[pred["method"] == m][keys + ["value", "n_active"]]
            wide = wide.merge(p.rename(columns={"value": m, "n_active": f"{m} active"}), on=keys, how="left")
        wide["n"] = inst["n"].iloc[0] if len(inst) else 0
        out.table(wide.round(4), "predicted_masks")
        summ = wide.groupby("task", sort=False)[["instruction", *self.methods]].mean().reset_index()
        summ.insert(1, "metric", summ["task"].map(wide.groupby("task")["metric"].first()))
        summ["trained mask"] = summ["task"].map(trained.set_index("task")["value"])
        higher = summ["task"].map(_higher_is_better)
        summ["seen instructions"] = summ["task"].map(seen)
        # the trained mask "works" where it reaches 0.9 x the instruction (WER: 1.1 x + 0.02), as in the table summary
        summ["trained mask works"] = np.where(higher, summ["trained mask"] >= 0.9 * summ["seen instructions"],
                                              summ["trained mask"] <= 1.1 * summ["seen instructions"] + 0.02)
        for m in self.methods:
            ratio = np.where(higher, summ[m] / summ["trained mask"], summ["trained mask"] / summ[m])
            summ[f"{m} / trained"] = ratio  # ≥ 0.9 is the goal (for WER: trained / predicted)
        summ["wordings"] = wide.groupby("task", sort=False).size().values
        out.table(summ.round(4), "predicted_masks_summary")
        ref = trained.assign(condition="mask")
        obj = pred[pred["method"] == "objective"]
        out.figure(plots.plot_prompt_sensitivity(
            inst, ref, masks=obj, masks_label="predicted mask (objective predictor)",
            title="Held-out wordings as instructions (x) and the masks predicted from them (o)"), "fig2_predicted")
        out.figure(self.agreement(out), "mask_agreement")

    def agreement(self, out):
        """Jaccard of label, distilled and predicted masks per task, with the chance level of each pair."""
        from .. import analysis as an
        from .. import plots

        rows = []
        for t in ALL_TASKS:
            try:
                label = out.mask(Trained(t, paper=True)).binary()
                dist = out.mask(Trained(t, distilled="seen0")).binary()
                pred = Predicted(PredictorFile("objective"), t, "general", 0).build(out.mask)
            except AhaError:
                continue  # a mask this run does not have (a partial mask folder)
            for pair, (a, b) in {"label–distilled": (label, dist), "label–predicted": (label, pred),
                                 "distilled–predicted": (dist, pred)}.items():
                rows.append({"task": t, "pair": pair, "jaccard": an.jaccard(a, b),
                             "chance": an.expected_jaccard(a.n_active, b.n_active, a.size),
                             "active_a": a.n_active, "active_b": b.n_active})
        frame = pd.DataFrame(rows)
        out.table(frame.round(4), "mask_agreement")
        return plots.plot_mask_agreement(frame, title="Jaccard of label, distilled and predicted masks "
                                                      "(ticks: chance level)")


REGISTRY: dict[str, Experiment] = {e.name: e for e in (
    SingleTask(), CompositeTasks(), PromptSensitivity(), Jaccard(), TopKSweep(), LambdaSweep(), SeedMasks(),
    MaskAlgebra(), LayerProfiles(), DistilledMasks(), DistilledWordings(), PredictedMasks(), SalmonnMasks())}


def committed_masks(names=tuple(REGISTRY), plan: Plan = FULL) -> list[Trained]:
    """The committed masks the experiments ``names`` read, each once: seed 0 and λ 0 first, then by seed and λ,
    then the distilled masks (from the training instruction first) and the predictors."""
    refs = {m for name in names for m in REGISTRY[name].masks(plan)}

    def order(m):
        if isinstance(m, PredictorFile):  # last: the masks method regresses onto the masks before it
            return (1, 0, False, 0.0, 0, 0, m.name)
        return (0, (m.distilled != "") + (m.distilled not in ("", "seen0")), m.paper, m.lam, m.seed,
                ALL_TASKS.index(m.task), "")

    return sorted(refs, key=order)
