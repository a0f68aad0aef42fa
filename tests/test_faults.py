"""Fault injection: what a cluster user hits, stage by stage, and what compass does about it.

Two tables, each a list a reader extends with one line:

- CASES: stage x bad input (missing, empty, a directory, a malformed line, a missing field, the wrong
  encoding, the wrong model, the wrong base, mismatched shapes, a damaged directory output, an output
  over an input, a bad config value, a full disk). Each runs `compass STAGE ...` and must end with
  exit code != 0 and exactly one error line naming the file:line, row or config key, with no
  traceback, no output (or hidden partial) left, and every input byte-for-byte and time-for-time
  untouched.
- KILLS: a stage SIGKILLed at a random point of its writing, then run again: it finishes, its output
  equals an uninterrupted run's (byte for byte; a directory's manifest up to its mtimes) and no
  stray file is left. (SFT resuming from its checkpoints is tests/test_resume.py; the distillation
  shard resuming on the hf backend is tests/test_distill.py.)

docs/reliability.md tabulates both; `python tests/test_faults.py` prints the tables for it, and
test_the_docs_table_lists_every_case keeps the two in step.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import REPO

CONFIG = str(REPO / "config" / "config.yaml")


# --- the inputs every case reads (built once; checked untouched after every case) --------------------


class Inputs:
    """Paths of the good and bad inputs, all under one directory (`root`), plus the session's Phase 1."""

    def __init__(self, root: Path, phase1: Path, llm: Path):
        self.root, self.phase1, self.llm = root, phase1, llm

    def __getattr__(self, name):  # w.traces -> ROOT/traces, w.bad_jsonl -> ROOT/bad.jsonl
        for ext in ("jsonl", "yaml"):
            if name.endswith(f"_{ext}"):
                return self.root / f"{name[:-len(ext) - 1]}.{ext}"
        return self.root / name


def _llm_of_other_shape(out: Path, like: Path, **change) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(like)
    for k, v in change.items():
        setattr(cfg, k, v)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(like).save_pretrained(out)
    return out


def _adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter of `base` (as PEFT saves it: base_model_name_or_path = base), written as a
    compass directory output (with its manifest)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compass.io import atomic_output

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    with atomic_output(out, directory=True) as tmp:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    return out


def _copy_without(src: Path, dst: Path, name: str, damaged: bool = False) -> Path:
    """A copy of `src` without `name`: a damaged compass output (manifest kept) or a user's own directory."""
    shutil.copytree(src, dst)
    (dst / name).unlink()
    if not damaged:
        (dst / "compass-manifest.json").unlink()
    return dst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, phase1_dir, phase1_llm) -> Inputs:
    from compass import cli
    from compass.data import demo
    from compass.io import write_jsonl
    from compass.models.merge import merge
    from compass.pairs.build import build_pairs
    from compass.io import read_jsonl

    root = tmp_path_factory.mktemp("fault_inputs")
    w = Inputs(root, phase1_dir, phase1_llm)
    prompts, _ = demo.generate(24, 1, seed=7)
    write_jsonl(w.prompts, prompts)
    assert cli.main(["distill", "--config", CONFIG, "--prompts", str(w.prompts), "--out", str(w.traces)]) == 0
    pairs, _ = build_pairs(read_jsonl(w.traces), seed=0)
    write_jsonl(w.pairs, pairs)
    write_jsonl(w.predictions, [{"id": "a", "prediction": "\\boxed{2}", "answer": "2"}])
    # bad files
    w.empty.write_text("")
    good = w.traces.read_text().splitlines()  # trace rows hold every prompt field too
    (root / "malformed.jsonl").write_text(good[0] + "\n" + good[1][:-9] + "\n")
    (root / "latin1.jsonl").write_bytes(good[0].encode() + b"\n" + good[1].encode().replace(b'"problem":"', b'"problem":"caf\xe9 '))
    row = json.loads(good[1])
    del row["problem"]
    (root / "no_problem.jsonl").write_text(good[0] + "\n" + json.dumps(row) + "\n")
    (root / "no_id.jsonl").write_text(w.traces.read_text().splitlines()[0] + "\n" + '{"response": "r"}\n')
    shutil.copy(w.traces.with_suffix(".stats.json"), root / "no_id.stats.json")
    (root / "adir" / "sub").mkdir(parents=True)
    (root / "adir" / "sub" / "keep.txt").write_text("a user's data")
    (root / "latin1.yaml").write_bytes(b"sft:\n  optim: \xe9\n")
    # models: an adapter of the Phase 1 LLM, the LLM with it merged (same shape, other weights), damaged copies
    _adapter(phase1_llm, w.adapter)
    merge(phase1_llm, w.adapter, w.merged, {"dtype": "auto", "parity_probes": 2, "atol_fp32": 1e-3, "atol_bf16": 0.25})
    _copy_without(phase1_llm, w.llm_no_config, "config.json")
    _copy_without(w.adapter, w.adapter_no_config, "adapter_config.json")
    _copy_without(w.adapter, w.adapter_no_weights, "adapter_model.safetensors", damaged=True)
    shutil.copytree(phase1_llm, w.llm_truncated)
    os.truncate(w.llm_truncated / "model.safetensors", 1000)
    shutil.copytree(phase1_dir, w.vlm_truncated)
    os.truncate(w.vlm_truncated / "model.safetensors", 1000)
    _llm_of_other_shape(w.llm_other_mlp, phase1_llm, intermediate_size=96)
    _adapter(_llm_of_other_shape(w.llm_narrow, phase1_llm, hidden_size=64, intermediate_size=96), w.adapter_narrow)
    cfg = json.loads((w.adapter_narrow / "adapter_config.json").read_text())
    (w.adapter_narrow / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "org/elsewhere"}))
    (w.adapter_narrow / "compass-manifest.json").unlink()  # an adapter from elsewhere
    # an adapter as compass's training writes it, its base since moved: training_log.json names it by weights
    from compass.models.checkpoint import base_record

    shutil.copytree(w.adapter, w.adapter_moved)
    (w.adapter_moved / "compass-manifest.json").unlink()
    record = {**base_record(phase1_llm), "path": "/elsewhere/phase1/llm"}
    (w.adapter_moved / "training_log.json").write_text(json.dumps({"global_step": 1, "base_model": record}))
    return w


def snapshot(*roots: Path) -> dict:
    """Every file's bytes and times under `roots`: what 'no input touched' compares."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            out[str(p)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


# --- bad inputs -----------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    stage: str
    fault: str  # what was tried (the docs table)
    argv: Callable[[Inputs, Path], list]  # (inputs, output directory) -> the command line after the stage
    expect: Callable[[Inputs, Path], str]  # text the one error line contains
    outcome: str = ""  # what happens, in words (the docs table); default: the expected line

    def line(self, w, out) -> str:
        return self.expect(w, out)


def C(id, stage, fault, argv, expect, outcome=""):
    return Case(id, stage, fault, argv, expect if callable(expect) else (lambda w, o, e=expect: e), outcome)


CASES = [
    # prompts
    C("prompts-out-is-a-directory", "prompts", "--out is an existing directory of the user's",
      lambda w, o: ["--out", w.adir, "--test-dir", o / "test"], lambda w, o: f"{w.adir}: is a directory no compass stage wrote"),
    C("prompts-unknown-source", "prompts", "a data source that does not exist",
      lambda w, o: ["--set", "data.sources=[{name: nope}]", "--out", o / "p.jsonl", "--test-dir", o / "test"],
      "data.sources[0] (nope): unknown data source 'nope'"),
    # distill
    C("distill-prompts-missing", "distill", "prompts file missing",
      lambda w, o: ["--prompts", w.root / "nope.jsonl", "--out", o / "s.jsonl"], lambda w, o: f"{w.root / 'nope.jsonl'}: file not found"),
    C("distill-prompts-empty", "distill", "prompts file empty",
      lambda w, o: ["--prompts", w.empty, "--out", o / "s.jsonl"], lambda w, o: f"{w.empty}: no prompts"),
    C("distill-prompts-directory", "distill", "prompts path is a directory",
      lambda w, o: ["--prompts", w.adir, "--out", o / "s.jsonl"], lambda w, o: f"{w.adir}: not a file"),
    C("distill-malformed-line", "distill", "a malformed JSONL line",
      lambda w, o: ["--prompts", w.malformed_jsonl, "--out", o / "s.jsonl"], lambda w, o: f"{w.malformed_jsonl}:2: "),
    C("distill-missing-field", "distill", "a row without `problem`",
      lambda w, o: ["--prompts", w.no_problem_jsonl, "--out", o / "s.jsonl"], lambda w, o: f"{w.no_problem_jsonl}:2: missing field(s) problem"),
    C("distill-wrong-encoding", "distill", "a Latin-1 byte in a UTF-8 file",
      lambda w, o: ["--prompts", w.latin1_jsonl, "--out", o / "s.jsonl"], lambda w, o: f"{w.latin1_jsonl}:2: 'utf-8' codec can't decode"),
    C("distill-out-is-input", "distill", "--out is the prompts file",
      lambda w, o: ["--prompts", w.prompts, "--out", w.prompts], lambda w, o: f"--out {w.prompts} would overwrite the input --prompts"),
    C("distill-stats-is-input", "distill", "--stats is the prompts file",
      lambda w, o: ["--prompts", w.prompts, "--out", o / "s.jsonl", "--stats", w.prompts],
      lambda w, o: f"--stats {w.prompts} would overwrite the input --prompts"),
    C("distill-no-teacher-model", "distill", "hf backend without a teacher model",
      lambda w, o: ["--set", "teacher.backend=hf", "--prompts", w.prompts, "--out", o / "s.jsonl"], "teacher.model must name a checkpoint"),
    # gather-traces
    C("gather-shard-without-stats", "gather-traces", "a shard without its stats file",
      lambda w, o: ["--shards", w.malformed_jsonl, "--out", o / "t.jsonl"], lambda w, o: f"{w.root / 'malformed.stats.json'}: file not found"),
    C("gather-row-without-id", "gather-traces", "a trace row without `id`",
      lambda w, o: ["--shards", w.no_id_jsonl, "--out", o / "t.jsonl"], lambda w, o: f"{w.no_id_jsonl}:2: missing field(s) id"),
    C("gather-duplicate-id", "gather-traces", "the same shard twice",
      lambda w, o: ["--shards", w.traces, w.traces, "--out", o / "t.jsonl"], "also appears in an earlier shard"),
    # sft
    C("sft-traces-empty", "sft", "traces file empty",
      lambda w, o: ["--traces", w.empty, "--model", w.llm, "--out", o / "adapter"], lambda w, o: f"{w.empty}: no rows to train on"),
    C("sft-traces-malformed", "sft", "a malformed traces line",
      lambda w, o: ["--traces", w.malformed_jsonl, "--model", w.llm, "--out", o / "adapter"], lambda w, o: f"{w.malformed_jsonl}:2: "),
    C("sft-model-is-vlm", "sft", "--model is the Phase 1 VLM (wrong model)",
      lambda w, o: ["--traces", w.traces, "--model", w.phase1, "--out", o / "adapter"], "is a VLM checkpoint; training takes the language model"),
    C("sft-model-missing", "sft", "--model directory missing",
      lambda w, o: ["--traces", w.traces, "--model", w.root / "nope", "--out", o / "adapter"], "directory not found"),
    C("sft-model-without-config", "sft", "--model without config.json",
      lambda w, o: ["--traces", w.traces, "--model", w.llm_no_config, "--out", o / "adapter"], "holds no config.json"),
    C("sft-model-truncated", "sft", "--model's weights truncated (damaged directory output)",
      lambda w, o: ["--traces", w.traces, "--model", w.llm_truncated, "--out", o / "adapter"],
      lambda w, o: f"{w.llm_truncated / 'model.safetensors'}: 1000 bytes, compass-manifest.json says"),
    C("sft-bad-scheduler", "sft", "sft.lr_scheduler_type unknown to transformers",
      lambda w, o: ["--set", "sft.lr_scheduler_type=cosine_annealing", "--traces", w.traces, "--model", w.llm, "--out", o / "adapter"],
      "--set sft.lr_scheduler_type=cosine_annealing: sft.lr_scheduler_type: 'cosine_annealing' is not one of"),
    C("sft-batch-not-multiple", "sft", "global batch not a multiple of micro batch x devices",
      lambda w, o: ["--set", "sft.micro_batch_size=3", "--traces", w.traces, "--model", w.llm, "--out", o / "adapter"],
      "sft.global_batch_size=32 is not a multiple of sft.micro_batch_size=3 x 1 device(s)"),
    # dpo
    C("dpo-pairs-missing-fields", "dpo", "traces given as pairs (fields missing)",
      lambda w, o: ["--pairs", w.traces, "--model", w.llm, "--out", o / "adapter"], lambda w, o: f"{w.traces}:1: missing field(s) prompt, chosen, rejected"),
    C("dpo-pairs-empty", "dpo", "pairs file empty",
      lambda w, o: ["--pairs", w.empty, "--model", w.llm, "--out", o / "adapter"], lambda w, o: f"{w.empty}: no rows to train on"),
    C("dpo-loss-weights-length", "dpo", "dpo.loss_weights of the wrong length",
      lambda w, o: ["--set", "dpo.loss_weights=[1.0]", "--pairs", w.pairs, "--model", w.llm, "--out", o / "adapter"],
      "--set dpo.loss_weights=[1.0]: dpo.loss_weights has 1 weight(s) for 2 loss(es)"),
    # merge
    C("merge-wrong-base", "merge", "the adapter onto another model of the same shape (wrong base)",
      lambda w, o: ["--base", w.merged, "--adapter", w.adapter, "--out", o / "merged"],
      lambda w, o: f"{w.adapter}: trained on {w.llm}, not on --base {w.merged} (other weights)"),
    C("merge-wrong-base-recorded", "merge", "an adapter whose training recorded another base (moved since)",
      lambda w, o: ["--base", w.merged, "--adapter", w.adapter_moved, "--out", o / "merged"],
      lambda w, o: f"{w.adapter_moved}: trained on /elsewhere/phase1/llm, not on --base {w.merged} (other weights)"),
    C("merge-base-without-config", "merge", "--base without config.json",
      lambda w, o: ["--base", w.llm_no_config, "--adapter", w.adapter, "--out", o / "merged"], "holds no config.json"),
    C("merge-adapter-without-config", "merge", "--adapter without adapter_config.json",
      lambda w, o: ["--base", w.llm, "--adapter", w.adapter_no_config, "--out", o / "merged"], "holds no adapter_config.json"),
    C("merge-adapter-weights-deleted", "merge", "the adapter's weights deleted (damaged directory output)",
      lambda w, o: ["--base", w.llm, "--adapter", w.adapter_no_weights, "--out", o / "merged"],
      lambda w, o: f"{w.adapter_no_weights / 'adapter_model.safetensors'}: missing, listed in compass-manifest.json"),
    C("merge-mismatched-shapes", "merge", "an adapter of a narrower model (mismatched shapes)",
      lambda w, o: ["--base", w.llm, "--adapter", w.adapter_narrow, "--out", o / "merged"],
      lambda w, o: f"{w.adapter_narrow}: does not fit the base model {w.llm}: size mismatch"),
    C("merge-out-is-base", "merge", "--out is the base model",
      lambda w, o: ["--base", w.merged, "--adapter", w.adapter, "--out", w.merged], lambda w, o: f"--out {w.merged} would overwrite the input --base"),
    C("merge-out-holds-inputs", "merge", "--out is the directory holding the inputs",
      lambda w, o: ["--base", w.merged, "--adapter", w.adapter, "--out", w.root], lambda w, o: f"--out {w.root} would overwrite the input"),
    # compose
    C("compose-mismatched-shapes", "compose", "an LLM with another intermediate_size (mismatched shapes)",
      lambda w, o: ["--phase1", w.phase1, "--llm", w.llm_other_mlp, "--out", o / "vlm"],
      lambda w, o: f"{w.llm_other_mlp}: intermediate_size=96 does not match Phase 1's text model (256)"),
    C("compose-llm-without-config", "compose", "--llm without config.json",
      lambda w, o: ["--phase1", w.phase1, "--llm", w.llm_no_config, "--out", o / "vlm"], "holds no config.json"),
    C("compose-llm-is-vlm", "compose", "--llm is the Phase 1 VLM (wrong model)",
      lambda w, o: ["--phase1", w.phase1, "--llm", w.phase1, "--out", o / "vlm"], "is a VLM checkpoint; compose takes the trained language model"),
    C("compose-phase1-truncated", "compose", "Phase 1's weights truncated (damaged directory output)",
      lambda w, o: ["--phase1", w.vlm_truncated, "--llm", w.merged, "--out", o / "vlm"],
      lambda w, o: f"{w.vlm_truncated / 'model.safetensors'}: 1000 bytes, compass-manifest.json says"),
    # extract-llm
    C("extract-llm-not-a-vlm", "extract-llm", "--phase1 is an LLM (wrong model)",
      lambda w, o: ["--phase1", w.llm, "--out", o / "llm"], "model_type 'llama' is not a LLaVA-OneVision VLM"),
    # pairs
    C("pairs-malformed-line", "pairs", "a malformed traces line",
      lambda w, o: ["--traces", w.malformed_jsonl, "--out", o / "pairs.jsonl"], lambda w, o: f"{w.malformed_jsonl}:2: "),
    C("pairs-weights-zero", "pairs", "every pairs.weights 0",
      lambda w, o: ["--set", "pairs.weights={omit_thinking: 0, tamper_thinking_numbers: 0, tamper_answer: 0}",
                    "--traces", w.traces, "--out", o / "pairs.jsonl"], "pairs.weights: at least one corruption needs a weight > 0"),
    C("pairs-out-is-traces", "pairs", "--out is the traces file",
      lambda w, o: ["--traces", w.traces, "--out", w.traces], lambda w, o: f"--out {w.traces} would overwrite the input --traces"),
    # grade
    C("grade-out-is-a-directory", "grade", "--out is an existing directory of the user's",
      lambda w, o: ["--predictions", w.predictions, "--out", w.adir], lambda w, o: f"{w.adir}: is a directory no compass stage wrote"),
    C("grade-missing-field", "grade", "a prediction row without `prediction`",
      lambda w, o: ["--predictions", w.no_id_jsonl, "--out", o / "g.jsonl"], lambda w, o: f"{w.no_id_jsonl}:1: missing field(s) prediction"),
    # config, any stage
    C("config-not-utf8", "grade", "a config file in Latin-1",
      lambda w, o: ["--config", w.latin1_yaml, "--predictions", w.predictions, "--out", o / "g.jsonl"],
      lambda w, o: f"{w.latin1_yaml}: not UTF-8 text (byte 14)"),
    C("config-malformed-set", "grade", "a --set without =",
      lambda w, o: ["--set", "sft.learning_rate", "--predictions", w.predictions, "--out", o / "g.jsonl"], "--set 'sft.learning_rate': expected KEY=VALUE"),
    C("config-malformed-params", "grade", "--params that is not JSON",
      lambda w, o: ["--params", "{sft: 1", "--predictions", w.predictions, "--out", o / "g.jsonl"], "--params: not valid JSON"),
]


def run_stage(stage: str, argv: list, capsys) -> tuple[int, str]:
    from compass.cli import main

    capsys.readouterr()
    rc = main([stage, "--config", CONFIG, *map(str, argv)] if "--config" not in map(str, argv) and "--params" not in map(str, argv)
              else [stage, *map(str, argv)])
    return rc, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("compass ") and ": error: " in line]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(inputs.root, inputs.phase1, inputs.llm)
    rc, err = run_stage(case.stage, case.argv(inputs, out), capsys)
    assert rc != 0, f"{case.id}: exit 0"
    lines = error_lines(err)
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    assert case.line(inputs, out) in lines[0], lines[0]
    assert list(out.iterdir()) == [], f"{case.id} left {[p.name for p in out.iterdir()]}"
    assert snapshot(inputs.root, inputs.phase1, inputs.llm) == before, f"{case.id} touched an input"


def test_an_adapter_merges_onto_its_base_wherever_it_lies(inputs, tmp_path):
    """The base check compares weights, not paths: the recorded base moved, or copied, is accepted."""
    from compass.models.merge import check_base

    check_base(inputs.adapter_moved, inputs.llm)
    shutil.copytree(inputs.llm, tmp_path / "copy", copy_function=shutil.copy)
    check_base(inputs.adapter, tmp_path / "copy")


def test_runaway_outputs_do_not_stall_pairs_or_grade(tmp_path, capsys):
    """Thousands of unclosed \\boxed{ (a generation that ran away): the whole stage stays fast (the
    answer layer's parser is linear; tests/test_answers.py and test_trace_format.py time the parts)."""
    from compass.trace_format import format_response

    runaway = ["\\boxed{" * 20000 + "7", format_response("p", "t", "7") + "\\boxed{" * 20000, "<Answer>" * 10000 + "\\boxed{" * 10000]
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(json.dumps({"id": f"r{i}", "problem": "p", "response": r, "answer": "7", "lang": "en"}) + "\n"
                              for i, r in enumerate(runaway * 4)))
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": f"r{i}", "prediction": r, "answer": "7"}) + "\n" for i, r in enumerate(runaway * 4)))
    for stage, argv in (("pairs", ["--traces", traces, "--out", tmp_path / "pairs.jsonl"]),
                        ("grade", ["--predictions", preds, "--out", tmp_path / "graded.jsonl"])):
        t0 = time.perf_counter()
        assert run_stage(stage, argv, capsys)[0] == 0
        assert time.perf_counter() - t0 < 10, f"{stage} took {time.perf_counter() - t0:.1f} s on 12 runaway rows"


def test_a_full_disk_is_one_line_and_leaves_nothing(inputs, tmp_path):
    """A disk that fills while the output is written (RLIMIT_FSIZE: the write fails with EFBIG, as
    ENOSPC would on a full file system)."""
    import resource

    rows = [{"id": str(i), "prediction": "\\boxed{2}", "answer": "2", "pad": "x" * 200} for i in range(200)]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "graded.jsonl"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    proc = subprocess.run([sys.executable, "-m", "compass", "grade", "--config", CONFIG, "--predictions", str(preds),
                           "--out", str(out)], capture_output=True, text=True, preexec_fn=limit, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == f"compass grade: error: {out}: File too large (EFBIG)"
    assert "Traceback" not in proc.stderr
    assert list(out.parent.iterdir()) == []


# --- SIGKILL at a random point, then the same command again ------------------------------------------


@dataclass
class Kill:
    stage: str
    argv: Callable[[Inputs, Path], list]  # (inputs, output directory) -> the command line after the stage
    outputs: tuple[str, ...]  # what the output directory holds when the stage is done
    window: float = 0.3  # the kill comes 0..window s after the stage first writes into the output directory


KILLS = [
    Kill("prompts", lambda w, o: ["--set", "data.demo.n_train=3000", "--out", o / "prompts.jsonl", "--test-dir", o / "test"],
         ("prompts.jsonl", "prompts.stats.json", "test"), window=0.03),
    Kill("distill", lambda w, o: ["--prompts", w.many_prompts, "--out", o / "0-of-1.jsonl", "--set", "teacher.chunk_size=100"],
         ("0-of-1.jsonl", "0-of-1.stats.json")),
    Kill("gather-traces", lambda w, o: ["--shards", w.many_traces, "--out", o / "traces.jsonl", "--plot", o / "lengths.png"],
         ("traces.jsonl", "traces.stats.json", "lengths.png")),
    Kill("pairs", lambda w, o: ["--traces", w.many_traces, "--out", o / "pairs.jsonl"], ("pairs.jsonl", "pairs.stats.json")),
    Kill("extract-llm", lambda w, o: ["--phase1", w.phase1, "--out", o / "llm"], ("llm",)),
    Kill("merge", lambda w, o: ["--base", w.llm, "--adapter", w.adapter, "--out", o / "merged"], ("merged",)),
    Kill("compose", lambda w, o: ["--phase1", w.phase1, "--llm", w.merged, "--out", o / "vlm"], ("vlm",)),
]


def contents(out: Path) -> dict:
    """Every output file's bytes (a manifest without its mtimes, which differ from run to run)."""
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "compass-manifest.json":
                manifest = json.loads(data)
                data = json.dumps({k: {f: {x: y for x, y in r.items() if x != "mtime_ns"} for f, r in v.items()}
                                   if k == "files" else v for k, v in manifest.items()}).encode()
            elif p.name.endswith(".stats.json"):  # how many prompts a run resumed is its history, not its result
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "resumed"}).encode()
            files[p.relative_to(out).as_posix()] = hashlib.sha256(data).hexdigest()
    return files


def kill_while_writing(cmd: list, out: Path, delay: float, timeout: float = 180) -> str:
    """Start `cmd`; SIGKILL it `delay` s after it first writes into `out` (what it was doing then)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not any(out.iterdir()):
            assert time.monotonic() < deadline, "the stage wrote nothing"
            if proc.poll() is not None:
                return "finished before writing was seen"
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is not None:
            return "finished before the kill"
        os.killpg(proc.pid, signal.SIGKILL)
        return "killed while writing"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def many_prompts(inputs):
    """1500 prompts and their reference traces: enough that a stage is still writing when it is killed."""
    from compass import cli
    from compass.data import demo
    from compass.io import write_jsonl

    write_jsonl(inputs.many_prompts, demo.generate(1500, 1, seed=8)[0])
    assert cli.main(["distill", "--config", CONFIG, "--prompts", str(inputs.many_prompts), "--out", str(inputs.many_traces)]) == 0
    return inputs.many_prompts


@pytest.mark.parametrize("kill", KILLS, ids=[k.stage for k in KILLS])
def test_killed_at_a_random_point_then_rerun_equals_an_uninterrupted_run(kill: Kill, inputs, many_prompts, tmp_path, capsys):
    from compass.cli import main

    rng = random.Random(kill.stage)  # a random point, the same on every run of the suite
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    clean.mkdir(), killed.mkdir()
    assert main([kill.stage, "--config", CONFIG, *map(str, kill.argv(inputs, clean))]) == 0
    before = snapshot(inputs.root, inputs.phase1, inputs.llm)

    cmd = [sys.executable, "-m", "compass", kill.stage, "--config", CONFIG, *map(str, kill.argv(inputs, killed))]
    what = kill_while_writing(cmd, killed, delay=rng.uniform(0, kill.window))
    print(f"{kill.stage}: {what}")
    for name in kill.outputs:  # an output in place is a whole one (a stage renames it in last)
        if (killed / name).exists() and name != "test":
            assert contents(killed / name) == contents(clean / name) if (killed / name).is_dir() else \
                (killed / name).read_bytes() == (clean / name).read_bytes()

    assert main([kill.stage, "--config", CONFIG, *map(str, kill.argv(inputs, killed))]) == 0
    assert sorted(p.name for p in killed.iterdir()) == sorted(kill.outputs), "stray files left"
    assert contents(killed) == contents(clean)
    assert snapshot(inputs.root, inputs.phase1, inputs.llm) == before


# --- the docs table -----------------------------------------------------------------------------------


def markdown_tables() -> str:
    rows = ["| case | stage | what was tried | what happens (exit 2, one line) |", "|---|---|---|---|"]
    w = Inputs(Path("IN"), Path("IN/phase1"), Path("IN/llm"))
    for c in CASES:
        line = c.outcome or c.line(w, Path("OUT")).replace("|", "\\|")
        rows.append(f"| `{c.id}` | {c.stage} | {c.fault} | `… {line} …` |")
    rows += ["", "| stage killed (SIGKILL) while writing | then |", "|---|---|"]
    for k in KILLS:
        rows.append(f"| `{k.stage}` | rerun: finishes, output identical to an uninterrupted run, no stray file |")
    return "\n".join(rows)


def test_the_docs_table_lists_every_case():
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    missing = [c.id for c in CASES if f"`{c.id}`" not in doc] + [k.stage for k in KILLS if f"| `{k.stage}` | rerun" not in doc]
    assert not missing, f"docs/reliability.md lacks {missing} (python tests/test_faults.py prints the tables)"


if __name__ == "__main__":
    print(markdown_tables())


def test_the_workflow_names_a_damaged_directory_output_at_start_up(tmp_path):
    """A file cut short inside a directory output: Snakemake stops at start-up naming it (even a dry
    run), rather than "Nothing to be done" with a later stage reading it; deleting the directory makes
    it plan the rule again."""
    from conftest import planned_jobs, snakemake

    args = ("--configfile", CONFIG, "--cores", "2")
    llm = "results/demo/phase1/llm"
    snakemake(tmp_path, *args, llm)
    assert planned_jobs(snakemake(tmp_path, *args, "-n", llm)) == {}
    os.truncate(tmp_path / "results/demo/phase1/vlm/model.safetensors", 1000)
    proc = snakemake(tmp_path, *args, "-n", llm, check=False)
    assert proc.returncode != 0
    assert (proc.stdout + proc.stderr).strip().splitlines()[-1] == (
        "compass: results/demo/phase1/vlm/model.safetensors: 1000 bytes, compass-manifest.json says "
        f"{json.loads((tmp_path / 'results/demo/phase1/vlm/compass-manifest.json').read_text())['files']['model.safetensors']['size']}"
        ": a damaged output of rule phase1_demo; delete results/demo/phase1/vlm and run again")
    shutil.rmtree(tmp_path / "results/demo/phase1/vlm")
    assert planned_jobs(snakemake(tmp_path, *args, "-n", "results/demo/phase1/vlm")) == {"phase1_demo": 1}
