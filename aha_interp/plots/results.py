"""Pictures of measured results: prompt sensitivity (Fig. 2), performance vs heads kept (Fig. 4), the λ ablation
(Fig. 5), seed masks and mask algebra. Each takes the tidy frame that :mod:`aha_interp.reproduce.paper` writes
(one row per evaluation: ``task, condition, mask, metric, value, ci_low, ci_high, n, n_active, …``), draws
its baseline next to the measured value, and returns the figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._base import new_ax, new_axes

ARROW = {True: "↑", False: "↓"}


def _metric_label(rows: pd.DataFrame) -> str:
    metric = str(rows["metric"].iloc[0])
    hib = bool(rows["higher_is_better"].iloc[0]) if "higher_is_better" in rows else metric != "wer"
    return f"{metric} {ARROW[hib]}"


def _hline(ax, value, label, style, color):
    if value is not None and np.isfinite(value):
        ax.axhline(value, ls=style, color=color, lw=1.2, label=label, zorder=1)


def plot_prompt_sensitivity(prompts: pd.DataFrame, reference: pd.DataFrame | None = None, axes=None, *,
                            masks: pd.DataFrame | None = None, masks_label: str = "mask from the wording",
                            title: str = "Prompt sensitivity: one cross per held-out prompt"):
    """Fig. 2: each task's metric under every held-out prompt (crosses), grouped by variation type.

    ``prompts``: rows with ``task, prompt_type, prompt_index, value, metric``. ``reference``: rows with ``task,
    condition, value`` whose ``mask`` and ``none`` conditions are drawn as lines (AHAMask, no instruction).
    ``masks``: rows like ``prompts`` for a mask made from each wording (predicted or distilled), used with no
    instruction: hollow circles beside the crosses, their mean per type dashed. ``axes``: one axis per task, or
    None for a new grid. Returns the figure.
    """
    tasks = list(dict.fromkeys(prompts["task"]))
    fig, axes = new_axes(axes, len(tasks), figsize=(3.0 * min(5, len(tasks)), 3.1 * ((len(tasks) + 4) // 5)),
                          ncols=5)
    types = list(dict.fromkeys(prompts["prompt_type"]))
    palette = dict(zip(types, __import__("seaborn").color_palette("tab10", len(types))))
    for ax, task in zip(axes, tasks):
        rows = prompts[prompts["task"] == task]
        for i, vt in enumerate(types):
            r = rows[rows["prompt_type"] == vt]
            jitter = np.linspace(-0.18, 0.18, len(r)) if len(r) > 1 else np.zeros(len(r))
            ax.scatter(i + jitter, r["value"], marker="x", s=28, color=palette[vt], zorder=3)
            ax.plot([i - 0.25, i + 0.25], [r["value"].mean()] * 2, color=palette[vt], lw=2, zorder=2)
            if masks is not None:
                m = masks[(masks["task"] == task) & (masks["prompt_type"] == vt)]
                if len(m):
                    mj = np.linspace(-0.18, 0.18, len(m)) if len(m) > 1 else np.zeros(len(m))
                    ax.scatter(i + 0.3 + mj * 0.5, m["value"], marker="o", s=22, facecolors="none",
                               edgecolors="black", lw=0.8, zorder=4, label=masks_label if i == 0 else None)
                    ax.plot([i + 0.1, i + 0.5], [m["value"].mean()] * 2, color="black", ls="--", lw=1.2, zorder=2)
        if reference is not None:
            ref = reference[reference["task"] == task].set_index("condition")["value"]
            _hline(ax, ref.get("mask"), "AHAMask (no instruction)", "-", "tab:orange")
            _hline(ax, ref.get("none"), "no instruction", ":", "grey")
        ax.set_xticks(range(len(types)), [t.replace("synonyms_", "syn. ").replace("capitalisation", "caps")
                                          for t in types], rotation=60, ha="right", fontsize=7)
        ax.set_title(task)
        ax.set_ylabel(_metric_label(rows), fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncol=2)
    fig.suptitle(title)
    return fig


def plot_topk_performance(topk: pd.DataFrame, axes=None, *,
                          title: str = "Performance vs heads switched on (top-k by logit)"):
    """Fig. 4: metric vs % of heads kept, heads switched on in order of their logit (line), with a band spanning
    random masks of the same sizes, the threshold-0 mask (triangle) and the instructed score (dashed).

    ``topk``: rows with ``task, kind`` (``topk``, ``random``, ``threshold``, ``instruction``), ``percent, value,
    metric``. Returns the figure.
    """
    tasks = list(dict.fromkeys(topk["task"]))
    fig, axes = new_axes(axes, len(tasks), figsize=(3.4 * len(tasks), 3.2))
    for ax, task in zip(axes, tasks):
        rows = topk[topk["task"] == task]
        line = rows[rows["kind"] == "topk"].sort_values("percent")
        rnd = rows[rows["kind"] == "random"].groupby("percent")["value"].agg(["min", "max", "mean"]).reset_index()
        if len(rnd):
            ends = line[line["percent"].isin([0.0, 100.0])][["percent", "value"]]
            ends = ends.assign(min=ends["value"], max=ends["value"], mean=ends["value"])  # 0 % and 100 % are not random
            band = pd.concat([rnd, ends.drop(columns="value")]).sort_values("percent")
            ax.fill_between(band["percent"], band["min"], band["max"], color="grey", alpha=0.25,
                            label="random masks (range)")
            ax.plot(band["percent"], band["mean"], color="grey", ls="--", lw=1)
        ax.plot(line["percent"], line["value"], color="tab:green", marker="o", ms=3, label="top-k by logit")
        thr = rows[rows["kind"] == "threshold"]
        if len(thr):
            ax.scatter(thr["percent"], thr["value"], marker="^", s=70, color="tab:orange", zorder=4,
                       label="AHAMask (logit ≥ 0)")
        inst = rows[rows["kind"] == "instruction"]
        if len(inst):
            _hline(ax, float(inst["value"].iloc[0]), "instruction, all heads", "-.", "tab:blue")
        ax.set_xlabel("% of heads active")
        ax.set_ylabel(_metric_label(rows))
        ax.set_title(task)
        ax.set_xlim(-2, 102)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    return fig


def plot_lambda_ablation(lam: pd.DataFrame, ax=None, *, baselines: dict[str, float] | None = None,
                         title: str = "Sparsity penalty λ: heads kept and accuracy"):
    """Fig. 5: performance (left axis, with 95 % intervals) and active heads (right axis) against λ.

    ``lam``: rows with ``lam, value, ci_low, ci_high, n_active, n_heads, metric``; ``baselines``: label → value
    lines (instruction, no instruction). λ = 0 sits at the left end of a symlog axis. Returns the figure.
    """
    fig, ax = new_ax(ax, figsize=(6.0, 4.0))
    lam = lam.sort_values("lam")
    x = lam["lam"].to_numpy(float)
    err = np.vstack([lam["value"] - lam["ci_low"], lam["ci_high"] - lam["value"]])
    ax.errorbar(x, lam["value"], yerr=err, color="tab:green", marker="o", capsize=3, label="AHAMask")
    for (label, value), style in zip((baselines or {}).items(), ("-.", ":", "--")):
        _hline(ax, value, label, style, "grey" if "no" in label else "tab:blue")
    positive = x[x > 0]
    ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1e-4)
    ax.set_xlabel("λ (penalty per active head)")
    ax.set_ylabel(_metric_label(lam), color="tab:green")
    ax2 = ax.twinx()
    ax2.plot(x, lam["n_active"], color="tab:purple", marker="s", ls="--", label="active heads")
    ax2.set_ylabel(f"active heads (of {int(lam['n_heads'].iloc[0])})", color="tab:purple")
    ax2.set_ylim(0, float(lam["n_heads"].iloc[0]) * 1.05)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.set_title(title)
    return fig


def _bars(ax, labels, rows, colors):
    vals = rows["value"].to_numpy(float)
    err = np.vstack([vals - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - vals])
    ax.bar(range(len(vals)), vals, yerr=err, color=colors, capsize=2)
    ax.set_xticks(range(len(vals)), labels, rotation=45, ha="right", fontsize=7)


def plot_seed_masks(seeds: pd.DataFrame, overlap: pd.DataFrame, axes=None, *,
                    title: str = "Masks from different seeds, and their intersection"):
    """Per task: the metric of each seed's mask and of their intersection (bars, 95 % intervals), the
    no-instruction score (dotted), and in the title the mean seed-to-seed Jaccard beside its chance value.

    ``seeds``: rows with ``task, mask_label`` (``s0``, ``s1``, …, ``∩``, ``none``), ``value, ci_low, ci_high,
    n_active``; ``overlap``: rows with ``task, jaccard, jaccard_chance``. Returns the figure.
    """
    tasks = list(dict.fromkeys(seeds["task"]))
    fig, axes = new_axes(axes, len(tasks), figsize=(3.0 * min(5, len(tasks)), 3.1 * ((len(tasks) + 4) // 5)),
                          ncols=5)
    ov = overlap.set_index("task")
    for ax, task in zip(axes, tasks):
        rows = seeds[(seeds["task"] == task) & (seeds["mask_label"] != "none")]
        labels = [f"{m}\n({int(a)})" for m, a in zip(rows["mask_label"], rows["n_active"])]
        colors = ["tab:green" if m != "∩" else "tab:orange" for m in rows["mask_label"]]
        _bars(ax, labels, rows, colors)
        none = seeds[(seeds["task"] == task) & (seeds["mask_label"] == "none")]
        if len(none):
            _hline(ax, float(none["value"].iloc[0]), "no instruction", ":", "grey")
        ax.set_ylabel(_metric_label(rows), fontsize=8)
        if task in ov.index:
            ax.set_title(f"{task}: J={ov.loc[task, 'jaccard']:.2f} (chance {ov.loc[task, 'jaccard_chance']:.2f})",
                         fontsize=9)
    fig.suptitle(title + " — bar labels: mask (active heads)")
    return fig


def plot_algebra_scores(algebra: pd.DataFrame, axes=None, *,
                        title: str = "Mask algebra on the composite tasks (instruction-following rate)"):
    """Per composite task: the score of single-task masks, their union / intersection, the composite mask
    trained directly, the instruction and no instruction (bars with 95 % intervals). Returns the figure.

    ``algebra``: rows with ``task, label, value, ci_low, ci_high, metric``.
    """
    tasks = list(dict.fromkeys(algebra["task"]))
    fig, axes = new_axes(axes, len(tasks), figsize=(3.6 * len(tasks), 3.4))
    colors = {"instruction": "tab:blue", "no instruction": "grey"}
    for ax, task in zip(axes, tasks):
        rows = algebra[algebra["task"] == task]
        _bars(ax, list(rows["label"]), rows, [colors.get(l, "tab:green" if "trained" not in l else "tab:orange")
                                              for l in rows["label"]])
        ax.set_ylim(0, 1.05)
        ax.set_title(task)
        ax.set_ylabel(_metric_label(rows), fontsize=8)
    fig.suptitle(title)
    return fig


def plot_condition_scores(rows: pd.DataFrame, order: list[str], axes=None, *, title: str = "Scores by condition"):
    """Per task, one point with its 95 % interval for each condition ``label`` in ``order`` (left to right).

    ``rows``: ``task, label, metric, value, ci_low, ci_high`` (and ``n_active``, shown under masks' labels).
    Returns the figure."""
    tasks = list(dict.fromkeys(rows["task"]))
    fig, axes = new_axes(axes, len(tasks), figsize=(3.0 * min(5, len(tasks)), 3.3 * ((len(tasks) + 4) // 5)),
                          ncols=5)
    colors = dict(zip(order, __import__("seaborn").color_palette("tab10", len(order))))
    for ax, task in zip(axes, tasks):
        r = rows[rows["task"] == task].drop_duplicates("label").set_index("label").reindex(order).dropna(
            subset=["value"])
        x = np.arange(len(r))
        err = np.vstack([r["value"] - r["ci_low"], r["ci_high"] - r["value"]])
        for xi, (label, row), e in zip(x, r.iterrows(), err.T):
            ax.errorbar(xi, row["value"], yerr=e[:, None], marker="o", color=colors[label], capsize=3,
                        label=label)
        names = [f"{l}\n({int(a)})" if "mask" in l and pd.notna(a) else l
                 for l, a in zip(r.index, r.get("n_active", pd.Series(index=r.index, dtype=float)))]
        ax.set_xticks(x, names, rotation=60, ha="right", fontsize=6)
        ax.set_title(task)
        ax.set_ylabel(_metric_label(r.reset_index()), fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncol=len(order))
    fig.suptitle(title)
    return fig


def plot_mask_agreement(agreement: pd.DataFrame, ax=None, *, title: str = "Mask agreement (Jaccard)"):
    """Jaccard per task (groups) and pair of masks (bars), with each pair's chance level as a black tick.

    ``agreement``: rows with ``task, pair, jaccard, chance``. Returns the figure."""
    fig, ax = new_ax(ax, figsize=(10.0, 3.8))
    tasks = list(dict.fromkeys(agreement["task"]))
    pairs = list(dict.fromkeys(agreement["pair"]))
    width = 0.8 / max(1, len(pairs))
    colors = __import__("seaborn").color_palette("Set2", len(pairs))
    for k, pair in enumerate(pairs):
        r = agreement[agreement["pair"] == pair].set_index("task").reindex(tasks)
        x = np.arange(len(tasks)) + (k - (len(pairs) - 1) / 2) * width
        ax.bar(x, r["jaccard"], width, color=colors[k], label=pair)
        ax.scatter(x, r["chance"], marker="_", s=120, color="black", zorder=3,
                   label="chance (same sizes)" if k == 0 else None)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("Jaccard")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, ncol=len(pairs) + 1, loc="lower right")
    ax.set_title(title)
    return fig
