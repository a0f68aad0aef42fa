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
from compass.report_figures import (METRIC_LABELS, plot_curves, plot_deltas, plot_elo, plot_grounding, plot_results,
                                    plot_stats)

PHASE_ORDER = ["phase1", "sft", "phase2"]
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
