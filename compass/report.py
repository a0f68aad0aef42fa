"""`compass report`: every evaluation, training curve and stage statistic in one page and one JSON.

    compass report --evals results/RUN/eval/*/*.json --traces-stats ... --pairs-stats ... \\
        --sft results/RUN/sft/adapter --dpo results/RUN/dpo/adapter --out results/RUN/report \\
        [--grpo results/RUN/grpo_format/adapter ...] [--ballots results/RUN/compare --votes votes.jsonl]

Writes ``index.html`` (the page), ``summary.json`` (the same numbers, machine-readable) and the
figures: ``results.png`` (every task × model, the task's main metric), ``deltas.png`` (change from
the previous phase), ``sft_curves.png``, ``dpo_curves.png`` (a recipe with DPO), ``{stage}_curves.png`` per
GRPO stage (rewards, KL, clip fractions, completion length; its late means in stats ``rl_stages``), ``stats.png``
(distillation and pairs) and, with votes, ``elo.png``. Reads only the small JSON files the stages wrote; never loads a model.

Rows: one per model (phase order: phase1, sft, phase2, then extra checkpoints) and per ablation
variant ("phase2 + step_by_step", whose change is against the same model's default prompt).

The grounding check: each image task (charts, chartqa, mathvista) is also evaluated with a blank image in
place of every picture (variant ``blank_image``: rows "phase2 + blank_image", whose change is against the
real pictures). The section "Grounding check" (and ``grounding`` in summary.json) puts the two side by
side per model with the gap: a model that reads the chart scores higher with it than without it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from compass.io import atomic_output, read_json

PHASE_ORDER = ["phase1", "sft", "phase2"]
METRIC_LABELS = {
    "accuracy": "accuracy", "macro_f1": "macro-F1", "mcc": "MCC", "roc_auc": "ROC-AUC", "f1": "F1",
    "well_formed_rate": "well-formed XML", "parse_failure_rate": "parse failures", "accuracy_norm": "acc (length-norm.)",
    "precision": "precision", "recall": "recall", "accuracy_all": "accuracy (failures wrong)",
}
# Secondary columns shown per task kind (the primary metric comes first).
SECONDARY = {
    "math": ["well_formed_rate"],
    "mc": ["accuracy_norm", "accuracy", "macro_f1"],
    "edinet": ["parse_failure_rate", "accuracy", "f1", "roc_auc", "macro_f1"],
}
SFT_KEYS = ["loss", "mean_token_accuracy", "learning_rate"]
DPO_KEYS = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"]
# A GRPO stage (compass grpo): its rewards (total and per function), KL, clip fractions and completion length.
GRPO_KEYS = ["reward", "rewards/format/mean", "rewards/accuracy/mean", "kl", "clip_ratio/low_mean",
             "clip_ratio/high_mean", "completions/mean_length"]


def stage_summary(curves: dict, tail: float = 0.25) -> dict:
    """A GRPO stage's row: each GRPO_KEYS series averaged over its last `tail` share of logged steps."""
    out = {}
    for key in GRPO_KEYS:
        values = [v for _, v in curves.get(key, [])]
        if values:
            last = values[-max(1, round(len(values) * tail)):]
            out[key] = sum(last) / len(last)
    return out


def _model_rank(name: str, order: list[str] = PHASE_ORDER) -> tuple:
    return (order.index(name), name) if name in order else (len(order), name)


def row_label(e: dict) -> str:
    v = e.get("variant") or "default"
    return e["model"] if v == "default" else f"{e['model']} + {v}"


def results_table(evals: list[dict], order: list[str] = PHASE_ORDER) -> dict:
    """{task: {row: metrics}} in phase order (`order`: with the recipe's stages between sft and phase2). Every
    row has n, primary, score (its primary metric) and delta (change of score from the previous phase, or for an
    ablation row from the same model's default prompt); math rows keep accuracy, well_formed_rate and
    delta_accuracy as before."""
    table: dict = {}
    for e in evals:
        primary = e.get("primary", "accuracy")
        row = {"model": e["model"], "variant": e.get("variant") or "default", "kind": e.get("kind", "math"),
               "n": e["n"], "primary": primary, "score": e.get(primary)}
        for k, v in e.items():
            if k not in row and isinstance(v, (int, float, type(None))) and not isinstance(v, bool) and k not in ("generation_seconds", "scoring_seconds"):
                row[k] = v
        for k in ("per_lang", "parse_failures", "lm_eval", "image_input"):
            if k in e:
                row[k] = e[k]
        table.setdefault(e["task"], {})[row_label(e)] = row
    for task, rows in table.items():
        ordered = sorted(rows, key=lambda r: (_model_rank(rows[r]["model"], order), rows[r]["variant"] != "default", rows[r]["variant"]))
        table[task] = {r: rows[r] for r in ordered}
        prev = None
        for name, row in table[task].items():
            if row["variant"] != "default":
                base = table[task].get(row["model"])
                ref = base if base is not None else None
            else:
                ref = table[task][prev] if prev is not None else None
                prev = name
            row["delta"] = None if ref is None or ref.get("score") is None or row.get("score") is None else row["score"] - ref["score"]
            if "accuracy" in row:
                # undefined (None) on either side, e.g. EDINET with no parsable answer: no delta
                row["delta_accuracy"] = (None if ref is None or ref.get("accuracy") is None or row["accuracy"] is None
                                         else row["accuracy"] - ref["accuracy"])
    return table


def grounding_table(table: dict) -> dict:
    """{image task: {model: {n, image, blank, gap, image_input}}} for every model evaluated on an image task both
    with its pictures and with blank ones (variant blank_image); gap = image - blank, in accuracy."""
    out: dict = {}
    for task, rows in table.items():
        for row in rows.values():
            if row["variant"] != "blank_image":
                continue
            real = rows.get(row["model"])
            if real is None:
                continue
            image, blank = real.get("score"), row.get("score")
            out.setdefault(task, {})[row["model"]] = {
                "n": real["n"], "image": image, "blank": blank,
                "gap": None if image is None or blank is None else image - blank,
                "image_input": real.get("image_input"),
            }
    return out


def training_curves(adapter_dir) -> dict:
    """Logged series of a TRL run (loss, rewards/margins, rewards/accuracies, ...) keyed by name."""
    path = Path(adapter_dir) / "training_log.json"
    if not path.is_file():
        return {}
    log = read_json(path)["log_history"]
    series: dict = {}
    for entry in log:
        if "step" not in entry or "train_loss" in entry:  # the closing summary entry is not a point
            continue
        for k, v in entry.items():
            if k not in ("step", "epoch") and isinstance(v, (int, float)):
                series.setdefault(k, []).append((entry["step"], v))
    return series


# --- figures ------------------------------------------------------------------------------------


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


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


def _value(metric: str, v) -> str:
    if v is None:
        return "–"
    return f"{v:+.3f}" if metric == "mcc" else _pct(v)


def _delta(metric: str, v) -> str:
    if v is None:
        return ""
    shown = f"{v:+.3f}" if metric == "mcc" else f"{v * 100:+.1f}"
    return f" <span class='{'up' if v >= 0 else 'down'}'>({shown})</span>"


def _kv_table(d: dict) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "–"
        rows.append(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>")
    return "<table class='kv'>" + "".join(rows) + "</table>"


def render_grounding(grounding: dict) -> str:
    if not grounding:
        return ""
    blocks = []
    for task, models in grounding.items():
        body = ""
        for m, g in models.items():
            gap = "–" if g["gap"] is None else f"{g['gap'] * 100:+.1f}"
            note = "text-only model: no image seen" if g.get("image_input") == "none" else ""
            body += (f"<tr><td>{html.escape(m)}</td><td>{g['n']}</td><td>{_pct(g['image'])}</td><td>{_pct(g['blank'])}</td>"
                     f"<td><b>{gap}</b></td><td>{note}</td></tr>")
        blocks.append(f"<h3>{html.escape(task)}</h3><table><tr><th>model</th><th>n</th><th>accuracy, real image</th>"
                      f"<th>accuracy, blank image</th><th>gap (points)</th><th></th></tr>{body}</table>")
    return ("<h2>Grounding check</h2><p>The same questions with a blank (white) image of the same size in place of each "
            "picture: a model that reads the chart loses accuracy when the chart is gone (gap = real − blank).</p>"
            + "".join(blocks))


def render_changes(record: dict | None) -> str:
    """Which tensors of the final VLM differ from Phase 1's, part by part (final_vlm/compose.json)."""
    if not record:
        return ""
    rows = ""
    for part, c in record["parts"].items():
        names = c["changed"]
        listed = (f"<details><summary>{len(names)} changed</summary><code>{'<br>'.join(map(html.escape, names))}</code>"
                  "</details>") if names else "none (bit-identical to Phase 1)"
        rows += f"<tr><td>{html.escape(part)}</td><td>{c['tensors']}</td><td style='text-align:left'>{listed}</td></tr>"
    return (f"<h2>Phase 2 against Phase 1</h2><p>Tensors of the final VLM that differ from Phase 1's (projector: "
            f"<code>{html.escape(record.get('projector', 'frozen'))}</code>; compose.json).</p>"
            f"<table><tr><th>part</th><th>tensors</th><th>changed</th></tr>{rows}</table>")


def render_html(run: str, table: dict, stats: dict, images: list[tuple[str, str]], comparison: dict | None = None,
                changes: dict | None = None) -> str:
    sections = []
    for task, models in table.items():
        first = next(iter(models.values()))
        primary, kind = first["primary"], first["kind"]
        extra = [m for m in SECONDARY.get(kind, []) if m != primary and any(r.get(m) is not None for r in models.values())]
        head = "".join(f"<th>{html.escape(METRIC_LABELS.get(m, m))}</th>" for m in extra)
        body = []
        for name, r in models.items():
            cls = " class='ablation'" if r["variant"] != "default" else ""
            cells = "".join(f"<td>{_value(m, r.get(m))}</td>" for m in extra)
            body.append(f"<tr{cls}><td>{html.escape(name)}</td><td>{r['n']}</td>"
                        f"<td><b>{_value(primary, r.get('score'))}</b>{_delta(primary, r.get('delta'))}</td>{cells}</tr>")
        sections.append(
            f"<h3>{html.escape(task)} <small>({kind}; main metric: {html.escape(METRIC_LABELS.get(primary, primary))})</small></h3>"
            f"<table><tr><th>model</th><th>n</th><th>{html.escape(METRIC_LABELS.get(primary, primary))}</th>{head}</tr>{''.join(body)}</table>"
        )
    figs = "\n".join(f"<figure><img src='{src}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}</figcaption></figure>" for src, cap in images)
    stat_blocks = "\n".join(f"<h3>{html.escape(name)}</h3>{_kv_table(s)}" for name, s in stats.items())
    comp = ""
    if comparison:
        rows = "".join(
            f"<tr><td>{html.escape(m)}</td><td>{r['elo']:.0f}</td><td>{r['low']:.0f} – {r['high']:.0f}</td><td>{r['wins']}</td><td>{r['ties']}</td><td>{r['losses']}</td></tr>"
            for m, r in comparison.get("ratings", {}).items()
        )
        comp = (f"<h2>Blind pairwise comparison</h2><p>{comparison.get('n_votes', 0)} votes on {comparison.get('n_ballots', 0)} "
                f"anonymised ballots (task {html.escape(str(comparison.get('task') or '?'))}).</p>"
                f"<table><tr><th>model</th><th>ELO</th><th>95% band</th><th>wins</th><th>ties</th><th>losses</th></tr>{rows}</table>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>compass report: {html.escape(run)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.up{{color:#1a7f37}}.down{{color:#cf222e}}img{{max-width:100%}}tr.ablation td{{font-style:italic;background:#fafafa}}
table.kv td{{text-align:left;font-size:13px}}small{{color:#666;font-weight:normal}}</style></head>
<body><h1>compass report — run <code>{html.escape(run)}</code></h1>
<h2>Evaluation</h2><p>Each task's main metric per model; in brackets its change from the previous phase (points, MCC
in units), or for an <i>ablation</i> row from the same model with the default prompt. The same numbers are in
<a href="summary.json">summary.json</a>.</p>
{''.join(sections)}
{render_grounding(grounding_table(table))}
{render_changes(changes)}
{comp}
<h2>Figures</h2>{figs}
<h2>Stage statistics</h2>{stat_blocks}
</body></html>
"""


def build(run: str, eval_paths, traces_stats, pairs_stats, sft_dir, dpo_dir, out_dir, ballots_dir=None, votes=None,
          compare_cfg: dict | None = None, seed: int = 42, grpo_dirs=(), compose_record=None) -> dict:
    """`pairs_stats` and `dpo_dir` None: a recipe without DPO; `grpo_dirs`: the GRPO stages' adapters
    (results/{run}/{stage}/adapter), each with its curves figure ({stage}_curves.png) and a row of rl_stages;
    `compose_record`: the final VLM's compose.json (which tensors changed from Phase 1)."""
    changes = read_json(compose_record) if compose_record is not None else None
    stages = [Path(d).parent.name for d in grpo_dirs]
    evals = [read_json(p) for p in eval_paths]
    # a stage's merged model evaluated as eval.checkpoints.<stage> is a row between sft and phase2
    table = results_table(evals, ["phase1", "sft", *stages, "phase2"])
    stats = {"distillation": read_json(traces_stats)}
    if pairs_stats is not None:
        stats["pairs"] = read_json(pairs_stats)
    curves = {"sft": training_curves(sft_dir)}
    if dpo_dir is not None:
        curves["dpo"] = training_curves(dpo_dir)
    for stage, d in zip(stages, grpo_dirs):
        curves[stage] = training_curves(d)
    if stages:
        stats["rl_stages"] = {s: {k: round(v, 4) for k, v in stage_summary(curves[s]).items()} for s in stages}
    comparison = None
    if ballots_dir is not None and votes is not None:
        from compass.eval.compare import score_votes

        comparison = score_votes(ballots_dir, votes, (compare_cfg or {}).get("k_factor", 16), seed)
        comparison["task"] = (compare_cfg or {}).get("task")
    with atomic_output(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        images = []
        plot_results(table, tmp / "results.png")
        images.append(("results.png", "Main metric per task and model (math tasks: hollow bar = well-formed-XML rate)"))
        if plot_grounding(grounding_table(table), tmp / "grounding.png"):
            images.append(("grounding.png", "Grounding check: accuracy with the real picture and with a blank one, per model"))
        if plot_deltas(table, tmp / "deltas.png"):
            images.append(("deltas.png", "Change from the previous phase (ablation rows: from the default prompt)"))
        plot_curves(curves["sft"], SFT_KEYS, "SFT", tmp / "sft_curves.png")
        images.append(("sft_curves.png", "SFT training curves"))
        if "dpo" in curves:
            plot_curves(curves["dpo"], DPO_KEYS, "DPO", tmp / "dpo_curves.png")
            images.append(("dpo_curves.png", "DPO training curves: loss, reward margins and accuracies"))
        for stage in stages:
            plot_curves(curves[stage], GRPO_KEYS, f"GRPO {stage}", tmp / f"{stage}_curves.png")
            images.append((f"{stage}_curves.png", f"GRPO stage {stage}: rewards, KL, clip fractions, completion length"))
        plot_stats(stats, tmp / "stats.png")
        images.append(("stats.png", "Distillation and DPO pairs statistics"))
        if comparison and comparison["ratings"]:
            plot_elo(comparison["ratings"], tmp / "elo.png")
            images.append(("elo.png", "ELO ratings from blind pairwise votes"))
        summary = {"run": run, "results": table, "grounding": grounding_table(table), "stats": stats, "training": curves,
                   "comparison": comparison, "phase2_changes": changes}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "index.html").write_text(render_html(run, table, stats, images, comparison, changes), encoding="utf-8")
    return summary


def add_arguments(p) -> None:
    p.add_argument("--evals", nargs="+", required=True, type=Path, help="evaluation summary JSONs")
    p.add_argument("--traces-stats", required=True, type=Path)
    p.add_argument("--pairs-stats", type=Path, default=None, help="DPO pairs stats (a recipe with DPO)")
    p.add_argument("--sft", required=True, type=Path, help="SFT adapter directory (its training_log.json)")
    p.add_argument("--dpo", type=Path, default=None, help="DPO adapter directory (its training_log.json; a recipe with DPO)")
    p.add_argument("--grpo", nargs="+", type=Path, default=[], help="GRPO stage adapter directories (results/RUN/STAGE/adapter)")
    p.add_argument("--out", required=True, type=Path, help="report directory (index.html, summary.json, figures)")
    p.add_argument("--ballots", type=Path, default=None, help="blind-comparison ballots directory (compass compare ballots)")
    p.add_argument("--votes", type=Path, default=None, help="votes JSONL on those ballots: adds the ELO ratings")
    p.add_argument("--compose", type=Path, default=None, help="the final VLM's compose.json: which tensors changed from Phase 1")


def main(args, cfg) -> None:
    summary = build(cfg["run"], args.evals, args.traces_stats, args.pairs_stats, args.sft, args.dpo, args.out,
                    args.ballots, args.votes, cfg["eval"].get("compare"), cfg["seed"], args.grpo, args.compose)
    for task, models in summary["results"].items():
        for model, r in models.items():
            extra = f"  well-formed {r['well_formed_rate']:6.1%}" if r.get("well_formed_rate") is not None else ""
            print(f"{task:18s} {model:24s} {r['primary']} {_value(r['primary'], r['score']):>7s}{extra}")
    for task, models in summary["grounding"].items():
        for model, g in models.items():
            gap = "n/a" if g["gap"] is None else f"{g['gap'] * 100:+.1f} points"
            print(f"grounding {task:9s} {model:24s} real image {_pct(g['image'])}, blank {_pct(g['blank'])}: {gap}")
    for part, c in (summary["phase2_changes"] or {}).get("parts", {}).items():
        print(f"phase2 vs phase1 {part:15s} {len(c['changed'])} of {c['tensors']} tensors changed")
    print(f"report -> {args.out}/index.html")
