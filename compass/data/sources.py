"""Source loaders: every dataset of the seed, normalised into one row schema.

A row is ``{"id", "source", "lang", "problem", "answer", "solution"}``:

* ``id``: ``{source}-{split}-{index:06d}``, the index of the row in the file or Hub split it was
  read from (before sampling), so an id is stable for a given file whatever the sample;
* ``lang``: the source's language (``ja`` for MGSM-ja, ``en`` for every other source);
* ``answer``: the gold final answer, normalised: GSM8K's ``#### 1,000`` -> ``1000``; AQuA-RAT ->
  the option letter; MATH, NuminaMath-CoT -> the last ``\\boxed{}`` of the solution (boxes side by side:
  all of them, comma-separated);
  OpenR1-Math, OpenMathReasoning -> their answer column. Orca Math and MathInstruct have no answer
  column: their answer is *extracted* from the worked solution by the answer layer
  (`compass.answers`: the last ``\\boxed{}``, else "The answer is X", else the last value) and is
  ``""`` when nothing can be extracted
  (MathInstruct's program-of-thought rows, whose output is Python code);
* ``solution``: the worked solution in plain text, or None where the dataset has none (MGSM test
  items) or it is not text (MathInstruct PoT rows). GSM8K's ``<<48/2=24>>`` calculator
  annotations and ``#### N`` line are removed; SVAMP's is its equation (``( 76 - 25 ) = 51``);
  OpenMathReasoning's is the part of ``generated_solution`` after ``</think>``.

A source spec (one entry of ``data.sources`` in the config) is ``{"name", "path", "hf_id",
"hf_config", "split", "limit"}``: with ``path`` the local file is read (``.jsonl``; ``.json``, a
JSON array or JSON lines; ``.tsv``; ``.csv``; ``.parquet``; or a directory of one-object ``.json``
files, the layout of the original MATH release); otherwise ``datasets.load_dataset(hf_id,
hf_config, split=split)``, where unset keys default to :data:`SEED_SOURCES` (``hf_config`` may be
a list: MATH is seven subject configs, concatenated). For a local file ``split`` only names the
ids (default: train/test/dev/validation found in the file name, else the seed split). ``limit`` keeps a
deterministic sample: the row indices are shuffled by ``random.Random`` seeded with the seed and
the source name, and rows are taken in that order (skipping rows with no problem) until ``limit``
are kept, then returned in file order.

**The default sample sizes in SEED_SOURCES are placeholders**: the seed card was not at hand when
they were written. They add up to about 597k prompts, the seed's total, and must be checked
against the seed card (per-source counts, and which OpenR1 config and OpenMathReasoning split
were used) before a production run.

MGSM-ja was a training source in the seed, and MGSM-ja is also an evaluation set here. Both cannot
hold: decontamination (compass.data.decontaminate) removes every training prompt that matches an
evaluation problem, so with ``mgsm_ja`` among the evaluation sets all 250 MGSM-ja training rows
are removed (and counted, with a warning, in the stats). That is on purpose: zero evaluation
items may reach the SFT data.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from compass.data.readers import Rows, load_hub, read_local
from compass.io import CompassError
from compass.answers import boxed_answer, choice_letter, extract_answer

# ---------------------------------------------------------------------------------------------
# The seed table.


@dataclass(frozen=True)
class SeedSource:
    name: str
    hf_id: str
    hf_configs: tuple  # configs loaded and concatenated in this order; (None,) = the default one
    split: str
    limit: int | None  # the seed's per-source sample size (placeholder, see the module docstring)
    rows: int | None  # rows upstream in that split (for orientation)


MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)

SEED_SOURCES: dict[str, SeedSource] = {
    s.name: s
    for s in (
        SeedSource("gsm8k", "openai/gsm8k", ("main",), "train", 7473, 7473),
        SeedSource("math", "EleutherAI/hendrycks_math", MATH_SUBJECTS, "train", 7500, 7500),
        SeedSource("svamp", "ChilleD/SVAMP", (None,), "train+test", 1000, 1000),
        SeedSource("aqua_rat", "deepmind/aqua_rat", ("raw",), "train", 97467, 97467),
        SeedSource("mathinstruct", "TIGER-Lab/MathInstruct", (None,), "train", 100000, 262039),
        SeedSource("mgsm_ja", "juletxara/mgsm", ("ja",), "test", 250, 250),
        SeedSource("openr1_math", "open-r1/OpenR1-Math-220k", ("default",), "train", 93733, 93733),
        SeedSource("orca_math", "microsoft/orca-math-word-problems-200k", (None,), "train", 100000, 200035),
        SeedSource("numinamath_cot", "AI-MO/NuminaMath-CoT", (None,), "train", 100000, 859494),
        # 3.2M CoT rows over ~306k distinct problems: one row per distinct problem is kept.
        SeedSource("open_math_reasoning", "nvidia/OpenMathReasoning", (None,), "cot", 90000, 3201061),
    )
}

# Evaluation sets whose problems are indexed for decontamination: name -> (source loader, hf_id,
# hf_config, split). MGSM's 250 problems are GSM8K test problems (translated for ja).
EVAL_SETS: dict[str, tuple[str, str, str | None, str]] = {
    "gsm8k_test": ("gsm8k", "openai/gsm8k", "main", "test"),
    "mgsm_ja": ("mgsm_ja", "juletxara/mgsm", "ja", "test"),
    "mgsm_en": ("mgsm_en", "juletxara/mgsm", "en", "test"),
    "math500": ("math500", "HuggingFaceH4/MATH-500", None, "test"),
    # Image evaluation sets: indexed by their pictures (compass.data.decontaminate), not their question texts.
    "chartqa_test": ("chartqa", "HuggingFaceM4/ChartQA", None, "test"),
    "mathvista_testmini": ("mathvista", "AI4Math/MathVista", None, "testmini"),
}

_EVAL_SPLITS = {source: split for source, _, _, split in EVAL_SETS.values()}

# ---------------------------------------------------------------------------------------------
# Text helpers.

_CALC = re.compile(r"<<[^<>]*>>")


def clean_number(x) -> str:
    """'1,000' -> '1000', 51.0 -> '51', ' 18. ' -> '18', 0.5 -> '0.5'; other text is only stripped."""
    if x is None:
        return ""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    s = str(x).strip().rstrip(".").strip()
    t = s.replace(",", "").replace("$", "")
    if re.fullmatch(r"-?\d+(?:\.\d+)?", t):
        if "." in t:
            t = t.rstrip("0").rstrip(".")
        return t
    return s


def solution_answer(text: str) -> str:
    """The gold answer of a worked solution without an answer column (the answer layer's
    extraction: the last box group, else a stated answer, else the last value): a choice letter
    as the letter, a number cleaned (`clean_number`); '' when nothing can be extracted."""
    got = extract_answer(text) if text else None
    if got is None or got.form == "last_number_words":  # "A triangle has three sides.": no stated value
        return ""
    letter = choice_letter(got)
    return letter if letter is not None and len(got) <= 12 else clean_number(got)


def _text(x) -> str:
    return "" if x is None else str(x).strip()


# ---------------------------------------------------------------------------------------------
# Per-source normalisers: upstream row -> {"problem", "answer", "solution"} (None: skip the row).


def _gsm8k(r: dict) -> dict:
    body, sep, gold = _text(r.get("answer")).rpartition("####")
    if not sep:  # no "#### N" line: keep the problem, no gold answer
        body, gold = _text(r.get("answer")), ""
    solution = _CALC.sub("", body).strip()
    return {"problem": _text(r.get("question")), "answer": clean_number(gold), "solution": solution or None}


def _math(r: dict) -> dict:
    solution = _text(r.get("solution"))
    answer = r.get("answer")
    answer = _text(answer) if answer not in (None, "") else (boxed_answer(solution) or "")
    return {"problem": _text(r.get("problem")), "answer": answer, "solution": solution or None}


def _svamp(r: dict) -> dict:
    body, question = _text(r.get("Body")), _text(r.get("Question"))
    if body and not body.endswith((".", "?", "!")):
        # A third of the bodies end in an open clause ("If he had $ 4 at the start"): join with a
        # comma ("..., how much did the candy bar cost?").
        first, _, rest = question.partition(" ")
        if first.lower() in ("how", "what", "which", "who", "when", "where", "find", "total"):
            question = f"{first.lower()} {rest}".strip()
        body += ","
    answer = clean_number(r.get("Answer"))
    equation = re.sub(r"(\d+)\.0\b", r"\1", _text(r.get("Equation")))
    return {
        "problem": f"{body} {question}".strip(),
        "answer": answer,
        "solution": f"{equation} = {answer}" if equation else None,
    }


def _aqua(r: dict) -> dict:
    options = []
    for opt in r.get("options") or []:
        m = re.match(r"\s*\(?([A-Ea-e])\s*\)\s*(.*)", str(opt), re.DOTALL)
        options.append(f"({m.group(1).upper()}) {m.group(2).strip()}" if m else str(opt).strip())
    problem = _text(r.get("question"))
    if options:
        problem += "\nAnswer Choices: " + " ".join(options)
    return {"problem": problem, "answer": _text(r.get("correct")).upper(), "solution": _text(r.get("rationale")) or None}


def _mathinstruct(r: dict) -> dict:
    output = _text(r.get("output"))
    if "PoT" in _text(r.get("source")):  # program of thought: the output is Python code
        return {"problem": _text(r.get("instruction")), "answer": "", "solution": None}
    return {"problem": _text(r.get("instruction")), "answer": solution_answer(output), "solution": output or None}


def _mgsm(r: dict) -> dict:
    worked = _text(r.get("answer"))  # only MGSM's 8 train exemplars have one; test items: None
    return {"problem": _text(r.get("question")), "answer": clean_number(r.get("answer_number")), "solution": worked or None}


def _openr1(r: dict) -> dict:
    solution = _text(r.get("solution"))
    answer = _text(r.get("answer")) or boxed_answer(solution) or ""
    return {"problem": _text(r.get("problem")), "answer": answer, "solution": solution or None}


def _orca(r: dict) -> dict:
    solution = _text(r.get("answer"))
    return {"problem": _text(r.get("question")), "answer": solution_answer(solution), "solution": solution or None}


def _numina(r: dict) -> dict:
    solution = _text(r.get("solution"))
    return {"problem": _text(r.get("problem")), "answer": boxed_answer(solution) or "", "solution": solution or None}


def _omr(r: dict) -> dict:
    generated = _text(r.get("generated_solution"))
    if "</think>" in generated:
        generated = generated.rsplit("</think>", 1)[1].strip()
    return {"problem": _text(r.get("problem")), "answer": _text(r.get("expected_answer")), "solution": generated or None}


def _label(x) -> str:
    """ChartQA's label: a string, or (HuggingFaceM4/ChartQA) a list holding one."""
    if isinstance(x, (list, tuple)):
        x = x[0] if x else ""
    return clean_number(x)


def _chartqa(r: dict) -> dict:
    image = r.get("image") if r.get("image") not in (None, "") else r.get("imgname")
    return {"problem": _text(r.get("query")), "answer": _label(r.get("label")), "solution": None, "image": image}


CHOICE_LETTERS = "ABCDEFGHIJ"


def _mathvista(r: dict) -> dict:
    problem, answer = _text(r.get("question")), _text(r.get("answer"))
    choices = [str(c) for c in r.get("choices") or []]
    if r.get("question_type") == "multi_choice" and choices:
        problem += "\nChoices: " + " ".join(f"({CHOICE_LETTERS[i]}) {c}" for i, c in enumerate(choices))
        if answer in choices:
            answer = CHOICE_LETTERS[choices.index(answer)]
    elif r.get("answer_type") == "float" and r.get("precision") is not None:
        digits = int(float(r["precision"]))
        problem += f"\nGive the answer with {digits} decimal place{'s' if digits != 1 else ''}."
    if _text(r.get("unit")):
        problem += f" (unit: {_text(r.get('unit'))})"
    image = r.get("decoded_image") if r.get("decoded_image") not in (None, "") else r.get("image")
    return {"problem": problem, "answer": answer, "solution": None, "image": image}


@dataclass(frozen=True)
class Loader:
    normalize: Callable[[dict], dict | None]
    lang: str = "en"
    images: bool = False  # rows come with one image each (normalize gives it as "image"; see _image_ref)
    unique_problems: bool = False  # several upstream rows per problem: keep the first of each
    problem_field: str = "problem"  # upstream column of the problem (for unique_problems)
    tsv_columns: tuple = ()  # column names of a header-less .tsv (MGSM)


SOURCES: dict[str, Loader] = {
    "gsm8k": Loader(_gsm8k, problem_field="question"),
    "math": Loader(_math),
    "svamp": Loader(_svamp),
    "aqua_rat": Loader(_aqua, problem_field="question"),
    "mathinstruct": Loader(_mathinstruct, problem_field="instruction"),
    "mgsm_ja": Loader(_mgsm, lang="ja", problem_field="question", tsv_columns=("question", "answer_number")),
    "openr1_math": Loader(_openr1),
    "orca_math": Loader(_orca, problem_field="question"),
    "numinamath_cot": Loader(_numina),
    "open_math_reasoning": Loader(_omr, unique_problems=True),
    # Evaluation sets (and sources in their own right where a config wants them).
    "mgsm_en": Loader(_mgsm, problem_field="question", tsv_columns=("question", "answer_number")),
    "math500": Loader(_math),
    # Image + question sources (rows carry `images`, compass.images; the files are written by
    # compass.data.image_store). ChartQA: HuggingFaceM4/ChartQA's image/query/label columns, or the
    # original release (ahmed-masry/ChartQA: {split}/{split}_human.json + {split}/png/{imgname}).
    # MathVista: AI4Math/MathVista's columns (decoded_image or an image path, question, choices, answer).
    "chartqa": Loader(_chartqa, images=True, problem_field="query"),
    "mathvista": Loader(_mathvista, images=True, problem_field="question"),
}

# Default Hub ids and splits of the image sources (not the seed's: the seed had none).
IMAGE_SOURCES: dict[str, SeedSource] = {
    s.name: s
    for s in (
        SeedSource("chartqa", "HuggingFaceM4/ChartQA", (None,), "train", None, 28299),
        SeedSource("mathvista", "AI4Math/MathVista", (None,), "testmini", None, 1000),
    )
}
# Defaults of every named source: the seed's table and the image sources (fetch.smk reads it too).
SOURCE_DEFAULTS: dict[str, SeedSource] = {**SEED_SOURCES, **IMAGE_SOURCES}

# ---------------------------------------------------------------------------------------------
# The entry points.


def _split_label(spec: dict, path, seed_src: SeedSource | None) -> str:
    label = spec.get("split")
    if not label and path is not None:
        p = Path(path)
        stem = p.name if p.is_dir() else p.stem
        for word in ("train", "test", "dev", "validation", "val"):
            if re.search(rf"(^|[^a-z]){word}([^a-z]|$)", stem.lower()):
                label = word
                break
        else:
            label = seed_src.split if seed_src else _EVAL_SPLITS.get(spec.get("name"), stem)
    label = label or (seed_src.split if seed_src else _EVAL_SPLITS.get(spec.get("name"), "all"))
    return re.sub(r"[^A-Za-z0-9_.]", "_", str(label))


def _sample_order(n_candidates: Sequence[int], limit: int | None, seed, name: str) -> list[int]:
    order = list(n_candidates)
    if limit is not None and limit < len(order):
        random.Random(f"compass:{name}:{seed}").shuffle(order)
    return order


def _image_ref(value, base: Path | None, where: str):
    """An image column's value as bytes (a Hub row's {"bytes": ...}, a decoded PIL image) or the Path of a
    local file (a name relative to the data file: beside it, or in its png/ or images/ directory)."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    if hasattr(value, "save"):  # a decoded PIL image
        import io

        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(value, str) and value.strip():
        p = Path(value.strip())
        looked = [p] if p.is_absolute() else [] if base is None else [base / p, base / "png" / p, base / "images" / p]
        for c in looked:
            if c.is_file():
                return c
        raise CompassError(f"{where}: image {value!r} not found (looked at {', '.join(map(str, looked)) or 'no file: a Hub row names none'})")
    raise CompassError(f"{where}: no image in this row")


def load_source(spec: dict, seed: int = 42) -> list[dict]:
    """Rows of one configured source, normalised to the row schema (see the module docstring). Rows of an
    image source (`Loader.images`) carry a transient ``image`` (bytes or a local Path) that
    compass.data.image_store.store_images turns into files and ``images``."""
    name = spec.get("name")
    loader = SOURCES.get(name)
    if loader is None:
        raise CompassError(f"unknown data source {name!r} (known: {', '.join(sorted(SOURCES))})")
    seed_src = SOURCE_DEFAULTS.get(name)
    limit = spec.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise CompassError(f"data source {name}: limit must be a positive integer or null, got {limit!r}")
    path = spec.get("path")
    base = None
    if path:
        table = read_local(path, loader.tsv_columns)
        where = str(path)
        base = Path(path) if Path(path).is_dir() else Path(path).parent
    else:
        hf_id = spec.get("hf_id") or (seed_src.hf_id if seed_src else None)
        if not hf_id:
            raise CompassError(f"data source {name}: give a local `path` or a Hugging Face `hf_id`")
        if spec.get("hf_config") is not None:
            cfg = spec["hf_config"]
            configs = tuple(cfg) if isinstance(cfg, (list, tuple)) else (cfg,)
        elif seed_src is not None and hf_id == seed_src.hf_id:
            configs = seed_src.hf_configs
        else:
            configs = (None,)
        split = spec.get("split") or (seed_src.split if seed_src else "train")
        table = Rows(load_hub(hf_id, configs, split), "dataset")
        where = f"{hf_id} ({split})"
    label = _split_label(spec, path, seed_src)

    candidates: Sequence[int] = range(len(table))
    if loader.unique_problems:
        try:
            problems = table.column(loader.problem_field)
        except (KeyError, ValueError) as e:
            raise CompassError(f"{where}: no column {loader.problem_field!r} ({e})") from None
        first: dict = {}
        for i, p in enumerate(problems):
            first.setdefault(p, i)
        candidates = sorted(first.values())
    order = _sample_order(candidates, limit, seed, name)

    want = len(order) if limit is None else min(limit, len(order))
    kept: list[tuple[int, dict]] = []
    pos = 0
    while len(kept) < want and pos < len(order):
        chunk = order[pos : pos + max(1024, (want - len(kept)) * 11 // 10)]
        pos += len(chunk)
        for i, raw in zip(chunk, table.take(chunk)):
            out = loader.normalize(raw)
            if out is None or not out["problem"]:
                continue
            if loader.images:
                out["image"] = _image_ref(out.get("image"), base, f"{where}: row {i}")
            kept.append((i, {"id": f"{name}-{label}-{i:06d}", "source": name, "lang": loader.lang, **out}))
            if len(kept) == want:
                break
    if not kept and len(table):
        columns = ", ".join(sorted(table.take([0])[0]))
        raise CompassError(
            f"{where}: no row with a problem for source {name} (its problem column is "
            f"{loader.problem_field!r}; this file has: {columns}); is it a {name} file?"
        )
    kept.sort(key=lambda t: t[0])
    return [row for _, row in kept]


def _eval_set_rows(name: str, path=None, hf_id: str | None = None) -> list[dict]:
    if name not in EVAL_SETS:
        raise CompassError(f"unknown evaluation set {name!r} for decontamination (known: {', '.join(sorted(EVAL_SETS))})")
    source, default_hf, config, split = EVAL_SETS[name]
    spec = {"name": source, "path": path, "split": split, "limit": None}
    if not path:
        spec["hf_id"] = hf_id or default_hf
        spec["hf_config"] = config if (hf_id is None or hf_id == default_hf) else None
    return load_source(spec)


def is_image_eval_set(name: str) -> bool:
    return name in EVAL_SETS and SOURCES[EVAL_SETS[name][0]].images


def load_eval_problems(name: str, path=None, hf_id: str | None = None) -> list[str]:
    """Problem texts of one evaluation set (for decontamination), from a local file or the Hub."""
    return [row["problem"] for row in _eval_set_rows(name, path, hf_id)]


def load_eval_images(name: str, path=None, hf_id: str | None = None) -> list[str]:
    """Pixel digests (compass.data.image_store.pixel_digest) of an image evaluation set's pictures."""
    from compass.data.image_store import digest_of

    return sorted({digest_of(row["image"], f"{name}: {row['id']}")[0] for row in _eval_set_rows(name, path, hf_id)})
