"""The report's figures (matplotlib, Agg): results per task and model, changes from the previous phase, the
grounding check, training curves, stage statistics and ELO ratings. `compass.report` calls them with the
tables it built; each writes one PNG.
"""

from __future__ import annotations

from pathlib import Path

METRIC_LABELS = {
    "accuracy": "accuracy", "macro_f1": "macro-F1", "mcc": "MCC", "roc_auc": "ROC-AUC", "f1": "F1",
    "well_formed_rate": "well-formed XML", "parse_failure_rate": "parse failures", "accuracy_norm": "acc (length-norm.)",
    "precision": "precision", "recall": "recall", "accuracy_all": "accuracy (failures wrong)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MODEL_COLORS = {"phase1": "#9aa5b1", "sft": "#4c8bf5", "phase2": "#1a7f37"}


def _color(row: dict, i: int) -> str:
    base = MODEL_COLORS.get(row["model"], ["#d97706", "#8b5cf6", "#db2777", "#0891b2"][i % 4])
    return base


def _fmt_metric(metric: str, v) -> str:
    if v is None:
        return "–"
    return f"{v:+.2f}" if metric == "mcc" else f"{v * 100:.1f}"


def plot_results(table: dict, path: Path) -> None:
    """One small panel per task: the main metric per model (bars), with the value on each bar;
    math tasks also show the well-formed-XML rate as a hollow bar."""
    plt = _plt()
    tasks = list(table)
    cols = min(4, max(1, len(tasks)))
    rows_n = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.4 * rows_n), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax, task in zip(axes.flat, tasks):
        rows = table[task]
        names = list(rows)
        primary = next(iter(rows.values()))["primary"]
        scale = 1 if primary == "mcc" else 100
        vals = [(rows[n]["score"] or 0) * scale for n in names]
        x = range(len(names))
        math_kind = next(iter(rows.values()))["kind"] == "math"
        w = 0.4 if math_kind else 0.6
        off = -0.2 if math_kind else 0.0
        bars = ax.bar([i + off for i in x], vals, w, color=[_color(rows[n], i) for i, n in enumerate(names)],
                      hatch=None, label=METRIC_LABELS.get(primary, primary))
        for b, n in zip(bars, names):
            ax.text(b.get_x() + b.get_width() / 2, b.get_height(), _fmt_metric(primary, rows[n]["score"]), ha="center", va="bottom", fontsize=8)
        if math_kind:
            wf = [(rows[n].get("well_formed_rate") or 0) * 100 for n in names]
            ax.bar([i + 0.2 for i in x], wf, 0.4, fill=False, edgecolor="#555", label="well-formed XML")
        ax.set_xticks(list(x), [n.replace(" + ", "\n+") for n in names], fontsize=8)
        if primary == "mcc":
            ax.set_ylim(-1, 1)
            ax.axhline(0, color="#888", lw=0.8)
        else:
            ax.set_ylim(0, 110)
        ax.set_ylabel(METRIC_LABELS.get(primary, primary) + ("" if primary == "mcc" else " (%)"))
        ax.set_title(task, fontsize=10)
        if math_kind:
            ax.legend(loc="upper left", fontsize=7, frameon=False)
        ax.grid(axis="y", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_deltas(table: dict, path: Path) -> bool:
    """Change of each task's main metric from the previous phase (points; green up, red down)."""
    entries = [(task, name, r["delta"], r["primary"]) for task, rows in table.items() for name, r in rows.items() if r.get("delta") is not None]
    if not entries:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(entries) + 1.2))
    labels = [f"{t}: {n}" + (" (MCC)" if p == "mcc" else "") for t, n, _, p in entries]
    vals = [d * 100 for _, _, d, _ in entries]  # points; MCC x100 on the same axis
    ax.barh(range(len(entries)), vals, color=["#1a7f37" if v >= 0 else "#cf222e" for v in vals])
    ax.set_yticks(range(len(entries)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#555", lw=0.8)
    for i, (v, (_, _, d, p)) in enumerate(zip(vals, entries)):
        text = f"{d:+.3f}" if p == "mcc" else f"{v:+.1f}"
        ax.text(v, i, f" {text} ", va="center", ha="left" if v >= 0 else "right", fontsize=8)
    span = max(abs(v) for v in vals) or 1
    ax.set_xlim(min(0, min(vals)) - 0.25 * span, max(0, max(vals)) + 0.25 * span)
    ax.set_xlabel("change of the main metric from the previous phase (points; MCC x100)")
    ax.grid(axis="x", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_grounding(grounding: dict, path: Path) -> bool:
    """The grounding check: per image task, each model's accuracy with the real picture and with a blank one."""
    if not grounding:
        return False
    plt = _plt()
    tasks = list(grounding)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        models = list(grounding[task])
        x = range(len(models))
        real = [(grounding[task][m]["image"] or 0) * 100 for m in models]
        blank = [(grounding[task][m]["blank"] or 0) * 100 for m in models]
        ax.bar([i - 0.2 for i in x], real, 0.4, color="#1a7f37", label="real image")
        ax.bar([i + 0.2 for i in x], blank, 0.4, color="#d0d7de", edgecolor="#555", label="blank image")
        for i, m in enumerate(models):
            gap = grounding[task][m]["gap"]
            if gap is not None:
                ax.text(i, max(real[i], blank[i]) + 2, f"{gap * 100:+.1f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(x), models, fontsize=8)
        ax.set_ylim(0, 115)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{task}: real vs blank image (gap, points)", fontsize=9)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
        ax.grid(axis="y", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def plot_curves(curves: dict, keys: list[str], title: str, path: Path) -> bool:
    """One panel per logged series (raw points faint, moving average bold); a placeholder figure
    saying so when the run logged none of them."""
    plt = _plt()
    keys = [k for k in keys if k in curves]
    if not keys:
        fig, ax = plt.subplots(figsize=(5, 1.4))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}: no training log", ha="center", va="center")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        steps, values = zip(*curves[key])
        ax.plot(steps, values, marker=".", lw=0.8, alpha=0.35, color="#4c8bf5")
        if len(values) >= 5:
            ax.plot(steps, _smooth(list(values), max(2, len(values) // 8)), lw=2, color="#1f4fbf")
        if key == "rewards/accuracies":
            ax.set_ylim(0, 1.05)
        if key == "rewards/margins":
            ax.axhline(0, color="#888", lw=0.8)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _counts(stats: dict) -> dict[str, dict[str, int]]:
    """The {name: count} maps of a stats file (strategies, dropped, per_source, ...), non-empty ones."""
    return {k: v for k, v in stats.items() if isinstance(v, dict) and v and all(isinstance(x, (int, float)) for x in v.values())
            and k not in ("weights",)}


def plot_stats(stats: dict, path: Path) -> None:
    """Distillation funnel (prompts -> completions -> traces) and the pairs' corruption mix."""
    plt = _plt()
    d, p = stats.get("distillation", {}), stats.get("pairs", {})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    funnel = [(k, d[k]) for k in ("prompts", "completions", "traces") if isinstance(d.get(k), (int, float))]
    if funnel:
        axes[0].barh([k for k, _ in funnel], [v for _, v in funnel], color=["#9aa5b1", "#4c8bf5", "#1a7f37"][: len(funnel)])
        for i, (_, v) in enumerate(funnel):
            axes[0].text(v, i, f" {v:,}", va="center", fontsize=9)
        axes[0].invert_yaxis()
        axes[0].set_xlim(0, max(v for _, v in funnel) * 1.18 or 1)
        dropped = d.get("dropped") or {}
        sub = ", ".join(f"{k} {v}" for k, v in dropped.items()) or "none"
        axes[0].set_title(f"distillation (dropped: {sub})", fontsize=10)
    else:
        axes[0].axis("off")
    strategies = p.get("strategies") or {}
    if strategies:
        names = list(strategies)
        axes[1].bar(names, [strategies[n] for n in names], color="#d97706")
        for i, n in enumerate(names):
            axes[1].text(i, strategies[n], f"{strategies[n]:,}", ha="center", va="bottom", fontsize=9)
        axes[1].set_ylim(0, max(strategies.values()) * 1.15 or 1)
        axes[1].set_title(f"DPO pairs: {p.get('pairs_out', sum(strategies.values())):,} by rejected-side corruption", fontsize=10)
        axes[1].tick_params(axis="x", labelsize=8)
    else:
        axes[1].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_elo(ratings: dict, path: Path) -> None:
    plt = _plt()
    names = list(ratings)
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(names) + 1.2))
    elo = [ratings[n]["elo"] for n in names]
    err = [[max(0.0, ratings[n]["elo"] - ratings[n]["low"]) for n in names], [max(0.0, ratings[n]["high"] - ratings[n]["elo"]) for n in names]]
    ax.errorbar(elo, range(len(names)), xerr=err, fmt="o", color="#1f4fbf", capsize=4)
    for i, n in enumerate(names):
        r = ratings[n]
        ax.text(r["elo"], i + 0.25, f"{r['elo']:.0f}  ({r['wins']}-{r['ties']}-{r['losses']})", ha="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.axvline(1000, color="#888", lw=0.8, ls=":")
    ax.set_xlabel("ELO (blind pairwise votes; bar: 95% over game orders)")
    ax.set_ylim(len(names) - 0.4, -0.7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the page -----------------------------------------------------------------------------------
