"""`compass report`: the table of every task x model with the change from the previous phase,
ablation rows, training curves, stage statistics, ELO, one summary JSON; it reads JSON only."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO

from compass.eval import compare
from compass.report import build, results_table


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def _math(model, task, acc, wf, variant="default"):
    return {"model": model, "task": task, "variant": variant, "kind": "math", "primary": "accuracy", "n": 100,
            "accuracy": acc, "well_formed_rate": wf, "per_lang": {"en": {"n": 100, "accuracy": acc}}, "generation_seconds": 1.0}


def _inputs(tmp_path):
    evals = [
        _math("phase1", "demo", 0.02, 0.0), _math("sft", "demo", 0.50, 0.95), _math("phase2", "demo", 0.60, 0.97),
        _math("phase2", "gsm8k", 0.30, 0.9), _math("phase1", "gsm8k", 0.10, 0.0),
        _math("phase2", "gsm8k", 0.35, 0.8, variant="step_by_step"),
        {"model": "sft", "task": "cma_basics", "variant": "default", "kind": "mc", "primary": "accuracy", "n": 38,
         "accuracy": 0.30, "accuracy_norm": 0.28, "lm_eval": {"acc": 0.30}},
        {"model": "phase2", "task": "cma_basics", "variant": "default", "kind": "mc", "primary": "accuracy", "n": 38,
         "accuracy": 0.25, "accuracy_norm": 0.31, "lm_eval": {"acc": 0.25}},
        {"model": "phase1", "task": "fraud_detection", "variant": "default", "kind": "edinet", "primary": "mcc", "n": 224,
         "n_parsed": 200, "parse_failure_rate": 24 / 224, "parse_failures": {"no_json": 24}, "accuracy": 0.5, "mcc": -0.05,
         "roc_auc": None, "f1": 0.4},
        {"model": "phase2", "task": "fraud_detection", "variant": "default", "kind": "edinet", "primary": "mcc", "n": 224,
         "n_parsed": 220, "parse_failure_rate": 4 / 224, "parse_failures": {"no_json": 4}, "accuracy": 0.6, "mcc": 0.15,
         "roc_auc": 0.62, "f1": 0.5},
    ]
    paths = [_write(tmp_path / "eval" / f"{i}.json", e) for i, e in enumerate(evals)]
    sft_log = {"log_history": [{"loss": 3 - i * 0.1, "mean_token_accuracy": 0.1 * i, "learning_rate": 1e-3, "epoch": i / 10, "step": 10 * i} for i in range(1, 8)]
               + [{"train_runtime": 12.0, "train_loss": 2.0, "epoch": 1.0, "step": 70}]}
    dpo_log = {"log_history": [{"loss": 0.7 - 0.03 * i, "rewards/margins": 0.1 * i, "rewards/accuracies": min(1, 0.5 + 0.05 * i),
                                "rewards/chosen": -0.1 * i, "rewards/rejected": -0.3 * i, "step": 5 * i} for i in range(1, 9)]}
    _write(tmp_path / "sft" / "training_log.json", sft_log)
    _write(tmp_path / "dpo" / "training_log.json", dpo_log)
    traces = _write(tmp_path / "traces.stats.json", {"backend": "reference", "prompts": 2000, "completions": 2000, "traces": 1990,
                                                      "dropped": {"wrong_answer": 10}, "per_source": {"demo": 1990}})
    pairs = _write(tmp_path / "pairs.stats.json", {"rows_in": 1990, "pairs_out": 1990, "strategies": {"omit_thinking": 700, "tamper_answer": 640, "tamper_thinking_numbers": 650},
                                                   "weights": {"omit_thinking": 0.34}})
    return paths, traces, pairs


def test_results_table_deltas_and_ablation_rows(tmp_path):
    paths, _, _ = _inputs(tmp_path)
    table = results_table([json.loads(p.read_text()) for p in paths])
    assert list(table["demo"]) == ["phase1", "sft", "phase2"]
    assert table["demo"]["phase1"]["delta"] is None
    assert table["demo"]["sft"]["delta"] == pytest.approx(0.48) and table["demo"]["phase2"]["delta_accuracy"] == pytest.approx(0.10)
    assert list(table["gsm8k"]) == ["phase1", "phase2", "phase2 + step_by_step"]
    assert table["gsm8k"]["phase2 + step_by_step"]["delta"] == pytest.approx(0.05)  # against phase2's default prompt
    assert table["cma_basics"]["phase2"]["delta"] == pytest.approx(-0.05) and table["cma_basics"]["phase2"]["accuracy_norm"] == 0.31
    fraud = table["fraud_detection"]["phase2"]
    assert fraud["primary"] == "mcc" and fraud["score"] == 0.15 and fraud["delta"] == pytest.approx(0.20)
    assert fraud["parse_failure_rate"] == pytest.approx(4 / 224) and fraud["parse_failures"] == {"no_json": 4}


def test_report_page_figures_and_summary(tmp_path):
    paths, traces, pairs = _inputs(tmp_path)
    preds = {m: [{"id": str(i), "problem": "q", "prediction": f"{m}{i}"} for i in range(5)] for m in ("sft", "phase2")}
    ballots, key = compare.make_ballots(preds, n=5, seed=0)
    compare.write_ballots(tmp_path / "ballots", ballots, key, {})
    votes = tmp_path / "votes.jsonl"
    votes.write_text("".join(json.dumps({"ballot": b, "winner": "1" if key[b][0] == "phase2" else "2"}) + "\n" for b in key))
    out = tmp_path / "report"
    summary = build("t", paths, traces, pairs, tmp_path / "sft", tmp_path / "dpo", out, tmp_path / "ballots", votes, {"task": "demo"}, 0)
    for name in ("index.html", "summary.json", "results.png", "deltas.png", "sft_curves.png", "dpo_curves.png", "stats.png", "elo.png"):
        assert (out / name).stat().st_size > 500, name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["results"]["demo"]["phase2"]["accuracy"] == 0.6
    assert [p[1] for p in on_disk["training"]["dpo"]["rewards/margins"]][:2] == pytest.approx([0.1, 0.2])
    assert "train_runtime" not in on_disk["training"]["sft"]  # the closing summary entry is not a curve point
    assert on_disk["stats"]["pairs"]["strategies"]["omit_thinking"] == 700
    assert list(on_disk["comparison"]["ratings"]) == ["phase2", "sft"] and on_disk["comparison"]["n_votes"] == 5
    page = (out / "index.html").read_text(encoding="utf-8")
    for text in ("phase2 + step_by_step", "fraud_detection", "MCC", "parse failures", "(+48.0)", "(-5.0)", "(+0.200)", "ELO",
                 "sft_curves.png", "dpo_curves.png", "stats.png", "wrong_answer: 10"):
        assert text in page, text


def test_report_without_training_logs_still_has_every_figure(tmp_path):
    paths, traces, pairs = _inputs(tmp_path)
    out = tmp_path / "r"
    build("t", paths[:3], traces, pairs, tmp_path / "nope", tmp_path / "nope", out)
    assert (out / "sft_curves.png").is_file() and (out / "dpo_curves.png").is_file() and (out / "results.png").is_file()


def test_report_cli_reads_json_only(tmp_path):
    paths, traces, pairs = _inputs(tmp_path)
    code = (
        "import sys; from compass.cli import main; "
        f"rc = main(['report', '--evals', *{[str(p) for p in paths]!r}, '--traces-stats', {str(traces)!r}, '--pairs-stats', {str(pairs)!r},"
        f" '--sft', {str(tmp_path / 'sft')!r}, '--dpo', {str(tmp_path / 'dpo')!r}, '--out', {str(tmp_path / 'rep')!r}]); "
        "assert rc == 0; assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'report imported a model library'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "fraud_detection" in proc.stdout and (tmp_path / "rep" / "index.html").is_file()


def test_an_undefined_accuracy_has_no_delta():
    """EDINET with no parsable answer has accuracy None (as the rehearsal's random model gives)."""
    none = {"task": "fraud_detection", "variant": "default", "kind": "edinet", "primary": "mcc", "n": 4, "n_parsed": 0,
            "accuracy": None, "mcc": None}
    table = results_table([{**none, "model": "phase1"}, {**none, "model": "sft"},
                           {**none, "model": "phase2", "accuracy": 0.5, "mcc": 0.1}])
    assert [r["delta_accuracy"] for r in table["fraud_detection"].values()] == [None, None, None]
    assert table["fraud_detection"]["phase2"]["delta"] is None


def test_curves_keep_steps_that_log_their_runtime(tmp_path):
    """TRL logs train_runtime / tokens per second with every step when it counts input tokens; only
    the closing entry (train_loss) is not a point."""
    from compass.report import training_curves

    log = {"log_history": [{"loss": 1.0 / i, "train_runtime": 2.0 * i, "train_tokens_per_second": 9.0, "step": i} for i in (1, 2)]
           + [{"train_runtime": 4.0, "train_loss": 0.7, "step": 2}]}
    _write(tmp_path / "training_log.json", log)
    assert training_curves(tmp_path)["loss"] == [(1, 1.0), (2, 0.5)]


def test_grounding_check_puts_real_and_blank_images_side_by_side(tmp_path):
    """Image tasks evaluated with their pictures and with blank ones (variant blank_image): a row per model
    and variant in the task's table, and the grounding section with the gap, in the page and summary.json."""
    from compass.report import grounding_table

    evals = [dict(_math("phase1", "charts", 0.20, 0.0), image_input="real"),
             dict(_math("phase1", "charts", 0.19, 0.0, variant="blank_image"), image_input="blank"),
             dict(_math("phase2", "charts", 0.62, 0.98), image_input="real"),
             dict(_math("phase2", "charts", 0.31, 0.97, variant="blank_image"), image_input="blank"),
             dict(_math("sft", "charts", 0.30, 0.95), image_input="none"),
             dict(_math("sft", "charts", 0.30, 0.95, variant="blank_image"), image_input="none")]
    table = results_table(evals)
    assert list(table["charts"]) == ["phase1", "phase1 + blank_image", "sft", "sft + blank_image", "phase2",
                                     "phase2 + blank_image"]
    assert table["charts"]["phase2 + blank_image"]["delta"] == pytest.approx(-0.31)  # against the real pictures
    g = grounding_table(table)
    assert g["charts"]["phase2"]["gap"] == pytest.approx(0.31) and g["charts"]["phase1"]["gap"] == pytest.approx(0.01)
    assert g["charts"]["sft"]["image_input"] == "none" and g["charts"]["sft"]["gap"] == 0
    _, traces, pairs = _inputs(tmp_path)
    paths = [_write(tmp_path / "charts_eval" / f"{i}.json", e) for i, e in enumerate(evals)]
    summary = build("t", paths, traces, pairs, tmp_path / "sft", tmp_path / "dpo", tmp_path / "report")
    on_disk = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert on_disk["grounding"]["charts"]["phase2"]["gap"] == pytest.approx(0.31) == summary["grounding"]["charts"]["phase2"]["gap"]
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "grounding.png").stat().st_size > 1000
    for text in ("Grounding check", "accuracy, blank image", "<b>+31.0</b>", "text-only model: no image seen", "(-31.0)",
                 "grounding.png"):
        assert text in page, text
    build("t", [_write(tmp_path / "x.json", _math("phase2", "demo", 0.5, 1.0))], traces, pairs, tmp_path / "sft",
          tmp_path / "dpo", tmp_path / "r2")
    assert "Grounding check" not in (tmp_path / "r2" / "index.html").read_text(encoding="utf-8")
    assert not (tmp_path / "r2" / "grounding.png").exists()
