"""`compass report`: every evaluation, training curve and stage statistic in one page and one JSON.

Reads only the small JSON files the stages wrote; never loads a model.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from compass.io import atomic_output, read_json

PHASE_ORDER = ["phase1", "sft", "phase2"]


def results_table(evals: list[dict]) -> dict:
    """{task: {model: {accuracy, well_formed_rate, n, delta_accuracy}}}; delta vs the previous phase."""
    table: dict = {}
    for e in evals:
        table.setdefault(e["task"], {})[e["model"]] = {
            "accuracy": e["accuracy"], "well_formed_rate": e["well_formed_rate"], "n": e["n"],
        }
    for task, models in table.items():
        prev = None
        for name in sorted(models, key=lambda m: PHASE_ORDER.index(m) if m in PHASE_ORDER else len(PHASE_ORDER)):
            models[name]["delta_accuracy"] = None if prev is None else models[name]["accuracy"] - models[prev]["accuracy"]
            prev = name
    return table


def training_curves(adapter_dir) -> dict:
    """Logged series of a TRL run (loss, rewards/margins, rewards/accuracies, ...) keyed by name."""
    log = read_json(Path(adapter_dir) / "training_log.json")["log_history"]
    series: dict = {}
    for entry in log:
        if "step" not in entry:
            continue
        for k, v in entry.items():
            if k not in ("step", "epoch") and isinstance(v, (int, float)):
                series.setdefault(k, []).append((entry["step"], v))
    return series


def plot_results(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(table)
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        models = list(table[task])
        x = range(len(models))
        acc = [table[task][m]["accuracy"] * 100 for m in models]
        wf = [table[task][m]["well_formed_rate"] * 100 for m in models]
        ax.bar([i - 0.2 for i in x], acc, 0.4, label="accuracy")
        ax.bar([i + 0.2 for i in x], wf, 0.4, label="well-formed XML")
        for i, (a, w) in enumerate(zip(acc, wf)):
            ax.text(i - 0.2, a + 1, f"{a:.0f}", ha="center", fontsize=8)
            ax.text(i + 0.2, w + 1, f"{w:.0f}", ha="center", fontsize=8)
        ax.set_xticks(list(x), models)
        ax.set_ylim(0, 110)
        ax.set_ylabel("%")
        ax.set_title(task)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(curves: dict, keys: list[str], title: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if k in curves]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        steps, values = zip(*curves[key])
        ax.plot(steps, values, marker=".")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _pct(v) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


def _delta(v) -> str:
    return "" if v is None else f" <span class='{'up' if v >= 0 else 'down'}'>({v * 100:+.1f})</span>"


def render_html(run: str, table: dict, stats: dict, images: list[tuple[str, str]]) -> str:
    rows = []
    for task, models in table.items():
        for model, r in models.items():
            rows.append(
                f"<tr><td>{html.escape(task)}</td><td>{html.escape(model)}</td><td>{r['n']}</td>"
                f"<td>{_pct(r['accuracy'])}{_delta(r['delta_accuracy'])}</td><td>{_pct(r['well_formed_rate'])}</td></tr>"
            )
    figs = "\n".join(f"<figure><img src='{src}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}</figcaption></figure>" for src, cap in images)
    stat_blocks = "\n".join(
        f"<h3>{html.escape(name)}</h3><pre>{html.escape(json.dumps(s, indent=1, ensure_ascii=False))}</pre>" for name, s in stats.items()
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>compass report: {html.escape(run)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child,td:nth-child(2){{text-align:left}}
.up{{color:#1a7f37}}.down{{color:#cf222e}}img{{max-width:100%}}pre{{background:#f6f8fa;padding:8px;font-size:12px}}</style></head>
<body><h1>compass report — run <code>{html.escape(run)}</code></h1>
<h2>Evaluation</h2><p>Accuracy (change from the previous phase in brackets) and well-formed-XML rate, per task and model.</p>
<table><tr><th>task</th><th>model</th><th>n</th><th>accuracy</th><th>well-formed</th></tr>
{''.join(rows)}</table>
<h2>Figures</h2>{figs}
<h2>Stage statistics</h2>{stat_blocks}
</body></html>
"""


def build(run: str, eval_paths, traces_stats, pairs_stats, sft_dir, dpo_dir, out_dir) -> dict:
    evals = [read_json(p) for p in eval_paths]
    table = results_table(evals)
    stats = {"distillation": read_json(traces_stats), "pairs": read_json(pairs_stats)}
    curves = {"sft": training_curves(sft_dir), "dpo": training_curves(dpo_dir)}
    with atomic_output(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        images = []
        plot_results(table, tmp / "results.png")
        images.append(("results.png", "Accuracy and well-formed rate per model"))
        if plot_curves(curves["sft"], ["loss", "mean_token_accuracy", "learning_rate"], "SFT", tmp / "sft_curves.png"):
            images.append(("sft_curves.png", "SFT training curves"))
        dpo_keys = ["loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected"]
        if plot_curves(curves["dpo"], dpo_keys, "DPO", tmp / "dpo_curves.png"):
            images.append(("dpo_curves.png", "DPO training curves"))
        summary = {"run": run, "results": table, "stats": stats, "training": curves}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "index.html").write_text(render_html(run, table, stats, images), encoding="utf-8")
    return summary


def add_arguments(p) -> None:
    p.add_argument("--evals", nargs="+", required=True, type=Path, help="evaluation summary JSONs")
    p.add_argument("--traces-stats", required=True, type=Path)
    p.add_argument("--pairs-stats", required=True, type=Path)
    p.add_argument("--sft", required=True, type=Path, help="SFT adapter directory (its training_log.json)")
    p.add_argument("--dpo", required=True, type=Path, help="DPO adapter directory (its training_log.json)")
    p.add_argument("--out", required=True, type=Path, help="report directory (index.html, summary.json, figures)")


def main(args, cfg) -> None:
    summary = build(cfg["run"], args.evals, args.traces_stats, args.pairs_stats, args.sft, args.dpo, args.out)
    for task, models in summary["results"].items():
        for model, r in models.items():
            print(f"{task:10s} {model:8s} accuracy {r['accuracy']:6.1%}  well-formed {r['well_formed_rate']:6.1%}")
    print(f"report -> {args.out}/index.html")
