"""The Japanese financial harness (pfnet-research/japanese-lm-fin-harness) on lm-evaluation-harness.

The five tasks are lm-eval `multiple_choice` tasks built from the harness's *default* prompt
templates (its ``{task}.yaml``: the description, ``doc_to_text_00``, choices and target as there,
zero-shot, no chat template), over the normalised rows of compass.eval.tasks. lm-eval runs the
log-likelihood requests (`HFLM` over the already-loaded model, or its `VLLM` model in production);
the per-document log-likelihoods it returns are kept in the predictions file and the metrics are
recomputed from them (and checked against lm-eval's own aggregation):

* ``accuracy`` (lm-eval ``acc``: argmax of the choices' log-likelihoods) and ``accuracy_norm``
  (``acc_norm``: log-likelihood divided by the choice's length in characters);
* chabsa: ``macro_f1``, the harness's "2class_adjusted_macro_f1_score_for_chabsa": sklearn's macro
  F1 over {positive, negative, and neutral golds (which no choice can match)} × 1.5, which is the
  mean F1 of the two choice classes with neutral-gold items counted as false positives of whatever
  was predicted. It is computed here in that second form, so it stays in [0, 1] even on a sample
  without a neutral gold (where the × 1.5 form would overshoot).

A LLaVA-OneVision checkpoint is scored with its language model on text-only input.
"""

from __future__ import annotations

import logging
import time

MC_DESCRIPTIONS = {
    "cma_basics": "以下の問題の適切な答えを選択肢から選んでアルファベットで答えなさい。\n\n\n",
    "security_sales_1": "以下の問題の適切な答えを選択肢から選んでアルファベットで答えなさい。\n\n\n",
    "cpa_audit": "以下の問題の答えとして適切な記号の組み合わせを選択肢から選んでアルファベットで答えなさい。\n\n\n",
    "fp2": "以下の問題の適切な答えを選択肢から選んで１～４の数字で答えなさい。\n\n\n",
}
CHABSA_DESCRIPTION = "以下のセンテンスにおける、ターゲットのセンチメントをpositiveかnegativeで答えてください。\n\n\n"
CHABSA_CHOICES = ["positive", "negative"]
FIN_TASKS = ("chabsa", "cma_basics", "cpa_audit", "fp2", "security_sales_1")


# --- the harness's default templates (jlm_fin_eval/tasks/*/utils.py: doc_to_text_00 & co) ------


def doc_to_text_with_choices(doc: dict) -> str:
    """cma_basics, cpa_audit, security_sales_1: question, context, lettered choices."""
    text = "【問題】\n" + doc["question"] + "\n"
    if doc.get("context"):
        text += doc["context"] + "\n"
    text += "\n【選択肢】\n"
    for cid, ctext in zip(doc["choices"]["id"], doc["choices"]["text"]):
        text += chr(cid + 65) + ": " + ctext + "\n"
    return text + "\n【答え】\n"


def doc_to_text_fp2(doc: dict) -> str:
    """fp2: the options are numbered inside the context; the choices are their numbers' text."""
    text = "【問題】\n" + doc["question"] + "\n"
    if doc.get("context"):
        text += doc["context"] + "\n"
    return text + "\n【答え】\n"


def letter_choices(doc: dict) -> list[str]:
    return [chr(cid + 65) for cid in doc["choices"]["id"]]


def letter_target(doc: dict) -> str:
    return chr(int(doc["answer"]) + 65)


def text_choices(doc: dict) -> list[str]:
    return list(doc["choices"]["text"])


def text_target(doc: dict) -> str:
    return doc["choices"]["text"][doc["choices"]["id"].index(doc["answer"])]


def chabsa_text(doc: dict) -> str:
    return f"センテンス: {doc['sentence']}\nターゲット: {doc['target']}\n回答:"


def task_config(task: str, rows: list[dict]) -> dict:
    """The lm-eval task config (what the harness's YAML says) over `rows`, held in memory."""

    def dataset(**_):
        import datasets

        return {"test": datasets.Dataset.from_list(rows)}

    base = {
        "task": f"compass_{task}",
        "dataset_path": "compass",
        "custom_dataset": dataset,
        "output_type": "multiple_choice",
        "test_split": "test",
        "fewshot_delimiter": "\n\n",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }
    if task == "chabsa":
        base.update(
            description=CHABSA_DESCRIPTION,
            doc_to_text=chabsa_text,
            doc_to_target=lambda d: d["polarity"],
            doc_to_choice=list(CHABSA_CHOICES),
        )  # target_delimiter: lm-eval's default " " (as the harness's chabsa.yaml)
        base["metric_list"].append({"metric": "f1", "aggregation": chabsa_f1_items, "higher_is_better": True})
        return base
    if task not in MC_DESCRIPTIONS:
        raise ValueError(f"not a financial harness task: {task}")
    base.update(description=MC_DESCRIPTIONS[task], target_delimiter="")
    if task == "fp2":
        base.update(doc_to_text=doc_to_text_fp2, doc_to_target=text_target, doc_to_choice=text_choices)
    else:
        base.update(doc_to_text=doc_to_text_with_choices, doc_to_target=letter_target, doc_to_choice=letter_choices)
    return base


def chabsa_macro_f1(gold: list, pred: list, labels=CHABSA_CHOICES) -> float:
    """Mean F1 of the positive and negative classes (= the harness's adjusted 3-class macro F1)."""
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=list(labels), average="macro", zero_division=0))


def chabsa_f1_items(items) -> float:
    """lm-eval aggregation over (gold index, pred index) pairs; a neutral gold is index -100."""
    gold, pred = zip(*items)
    return chabsa_macro_f1(list(gold), list(pred), labels=[0, 1])


# --- running ------------------------------------------------------------------------------------


def causal_lm_view(model):
    """The language model of a LLaVA-OneVision VLM as a causal LM sharing its tensors (text-only
    scoring); any other model is returned as it is."""
    if not hasattr(model, "config") or not hasattr(model.config, "text_config") or not hasattr(model, "lm_head"):
        return model
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(model.config.text_config, dtype=model.lm_head.weight.dtype)
    # The VLM's own modules (buffers included) are put in place: nothing is copied or left on meta.
    llm.model = model.model.language_model
    llm.lm_head = model.lm_head
    leftover = [n for n, t in [*llm.named_parameters(), *llm.named_buffers()] if t.is_meta]
    if leftover:
        raise RuntimeError(f"causal LM view of the VLM: tensors left unset: {leftover[:3]}")
    return llm.eval()


def engine_lm(engine):
    """lm-eval's LM interface over compass's vLLM engine (compass.generation): the log-likelihoods of
    the multiple-choice tasks come from the same engine, settings and tokenizer as every other vLLM
    stage. Tokenisation is HFLM's for a causal LM (no special tokens added)."""
    from lm_eval.api.model import TemplateLM

    class EngineLM(TemplateLM):
        backend = "causal"

        def __init__(self):
            super().__init__()
            self.tokenizer = engine.tokenizer

        @property
        def eot_token_id(self):
            return self.tokenizer.eos_token_id

        def tok_encode(self, string, add_special_tokens=None, **kwargs):
            return self.tokenizer(string, add_special_tokens=bool(add_special_tokens)).input_ids

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False):
            return engine.score([ctx + cont for _, ctx, cont in requests], [len(ctx) for _, ctx, _ in requests])

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("rolling log-likelihood: no compass task uses it")

        def generate_until(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError("generation goes through compass.generation, not lm-eval")

    return EngineLM()


def make_lm(ecfg: dict, model_path, seed: int, cfg: dict | None = None):
    """An lm-eval LM: HFLM over our loaded model (hf backend) or compass's vLLM engine (vllm backend)."""
    if ecfg.get("backend") == "vllm":
        from compass import generation

        cfg = cfg or {}
        engine = generation.load("vllm", model_path, cfg.get("chat", {}), dtype=ecfg.get("dtype", "auto"),
                                 tensor_parallel_size=ecfg.get("tensor_parallel_size", 1), seed=seed,
                                 engine_kwargs=(cfg.get("vllm") or {}).get("engine_kwargs"))
        return engine_lm(engine)
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from compass.generation import load_model

    model = load_model(model_path, dtype=ecfg.get("dtype", "auto"))
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return HFLM(pretrained=causal_lm_view(model), tokenizer=tokenizer, batch_size=ecfg["batch_size"], backend="causal")


def run(lm, task: str, rows: list[dict]) -> tuple[list[dict], dict]:
    """Score `rows` (the task's normalised rows) with lm-eval; per-row predictions and the summary."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.evaluator import evaluate as lm_evaluate

    for name in ("lm-eval", "lm_eval"):
        logging.getLogger(name).setLevel(logging.ERROR)  # one warning per neutral chABSA gold otherwise
    cfg = task_config(task, rows)
    t = ConfigurableTask(config=cfg)
    t.set_config(key="num_fewshot", value=0)
    t0 = time.perf_counter()
    res = lm_evaluate(lm=lm, task_dict={cfg["task"]: t}, log_samples=True, verbosity="ERROR")
    seconds = time.perf_counter() - t0
    samples = sorted(res["samples"][cfg["task"]], key=lambda s: s["doc_id"])
    if len(samples) != len(rows):
        raise RuntimeError(f"{task}: lm-eval scored {len(samples)} documents of {len(rows)}")
    choices_of = (lambda d: list(CHABSA_CHOICES)) if task == "chabsa" else (text_choices if task == "fp2" else letter_choices)
    out = []
    for s, row in zip(samples, rows):
        lls = [float(r[0]) for r in s["filtered_resps"]]
        choices = choices_of(row)
        pred = max(range(len(lls)), key=lambda i: lls[i])
        norm = [ll / len(c) for ll, c in zip(lls, choices)]
        pred_norm = max(range(len(norm)), key=lambda i: norm[i])
        gold = row["polarity"] if task == "chabsa" else choices[row["choices"]["id"].index(row["answer"])]
        out.append({
            "id": row["id"], "gold": gold, "prediction": choices[pred], "prediction_norm": choices[pred_norm],
            "choices": choices, "loglikelihoods": [round(x, 4) for x in lls],
            "correct": choices[pred] == gold, "correct_norm": choices[pred_norm] == gold,
        })
    n = len(out)
    summary = {
        "kind": "mc", "engine": f"lm-eval {_lm_eval_version()}", "n": n,
        "accuracy": sum(r["correct"] for r in out) / n if n else 0.0,
        "accuracy_norm": sum(r["correct_norm"] for r in out) / n if n else 0.0,
        "scoring_seconds": round(seconds, 2),
    }
    if task == "chabsa":
        summary["macro_f1"] = chabsa_macro_f1([r["gold"] for r in out], [r["prediction"] for r in out])
        summary["macro_f1_norm"] = chabsa_macro_f1([r["gold"] for r in out], [r["prediction_norm"] for r in out])
        summary["n_neutral_gold"] = sum(r["gold"] not in CHABSA_CHOICES for r in out)
    lm_res = res["results"][cfg["task"]]
    summary["lm_eval"] = {k.split(",")[0]: v for k, v in lm_res.items() if k.endswith(",none") and "stderr" not in k}
    return out, summary


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
