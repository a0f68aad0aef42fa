"""On-policy rejected sides: the SFT model's own answers that the grader marks wrong.

`compass policy-samples` writes the samples (`{"id", "samples": [...]}` per trace); `compass pairs
--samples` reads them (`load_samples`) and, for a share of the rows, takes a wrong one as the
rejected side (`mix_on_policy`) instead of a synthetic corruption.
"""

from __future__ import annotations

import json
import random
from typing import Callable, Mapping

from compass.answers import boxed_answer
from compass.io import CompassError, iter_jsonl

ON_POLICY = "on_policy"


def id_text(row_id) -> str:
    """A row id as text (ids may be JSON strings or integers; 7 and "7" are the same id)."""
    return row_id if isinstance(row_id, str) else json.dumps(row_id)


def gold_answer(row: dict) -> str | None:
    """The row's gold answer: its `answer` field, else the boxed answer of its response."""
    gold = row.get("answer")
    if gold is None or not str(gold).strip():
        gold = boxed_answer(row["response"])
    return gold if gold and gold.strip() else None


def samples_for(samples: Mapping[str, list[str]], row_id) -> list[str] | None:
    """On-policy samples of a trace: by its id, else by its prompt id (distill's "ID#sN" suffix removed)."""
    key = id_text(row_id)
    found = samples.get(key)
    if found is None and "#s" in key:
        base, _, n = key.rpartition("#s")
        if n.isdigit():
            found = samples.get(base)
    return found


def mix_on_policy(row: dict, samples: list[str] | None, *, seed: int, ratio: float, is_correct: Callable[[str, str], bool]) -> tuple[str | None, str]:
    """(rejected, outcome) for on-policy mode; rejected is None when the row stays synthetic.

    A row is drawn for on-policy with probability `ratio`, from its own random stream (seeded with
    the seed and the row id, apart from the synthetic corruption's), so the draw does not depend on
    the other rows. A drawn row takes one of the model's samples that the grader marks wrong
    (`is_correct(sample text, gold answer)` is False; the grader extracts the answer from the whole
    output), chosen at random among the distinct wrong samples in sorted order (so the samples'
    order does not matter). Empty samples and samples equal to the chosen response are never used.
    Outcomes: not_drawn, no_samples, no_gold, no_wrong_sample (the model never fails), on_policy.
    """
    rng = random.Random(f"{ON_POLICY}:{seed}:{id_text(row['id'])}")
    if ratio <= 0 or rng.random() >= ratio:
        return None, "not_drawn"
    if not samples:
        return None, "no_samples"
    gold = gold_answer(row)
    if gold is None:
        return None, "no_gold"
    chosen = row["response"]
    wrong = [text for text in sorted(set(samples)) if text.strip() and text != chosen and not is_correct(text, gold)]
    if not wrong:
        return None, "no_wrong_sample"
    return rng.choice(wrong), ON_POLICY


def load_samples(path, *, on_bad_line: str = "raise") -> tuple[dict[str, list[str]], list]:
    """On-policy samples: JSONL rows {"id": ..., "samples": ["model output", ...]} -> {id text: samples}
    (rows of the same id are concatenated; null samples are skipped)."""
    errors: list = []
    out: dict[str, list[str]] = {}
    for row in iter_jsonl(path, required=("id", "samples"), on_error=on_bad_line, errors=errors):
        s = row["samples"]
        if not isinstance(s, list) or not all(x is None or isinstance(x, str) for x in s):
            raise CompassError(f"{path}: id {row['id']!r}: samples must be a list of strings (null entries are skipped)")
        out.setdefault(id_text(row["id"]), []).extend(x for x in s if x is not None)
    return out, errors
