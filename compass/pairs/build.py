"""`compass pairs`: DPO preference pairs from teacher traces.

Every trace row (`id`, `problem`, `response`, and `lang`, `source`, `answer` when known) becomes at
most one pair in TRL's conversational format::

    {"id", "source", "lang", "strategy",
     "prompt": [system, user], "chosen": [assistant: the trace], "rejected": [assistant: a worse one]}

The rejected side is a synthetic corruption of the trace (`compass.pairs.corrupt`), drawn per row
with the configured weights, or, in on-policy mode, the SFT model's own sample that the grader
marks wrong (`mix_on_policy`).

Determinism: each row's randomness comes only from (seed, row id), and the output is sorted by id
(its JSON text, compared as UTF-8 bytes; rows with the same id by their own bytes). So the same
input and seed give byte-identical output whatever the order of the rows, the number of workers,
the block size or whether the sort spilled to disk; the stats JSON holds no timing either.

The pure core is `build_pairs` (rows in, pairs and stats out); `run_pairs` streams a JSONL file
through it in blocks (optionally in worker processes) and `main` is the CLI edge.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import multiprocessing
import operator
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple

from compass import trace_format
from compass.answers import boxed_answer
from compass.io import CompassError, JsonlError, atomic_output, iter_jsonl, write_json
from compass.pairs.corrupt import CORRUPTIONS, STRATEGIES
from compass.trace_format import Sections, detect_lang, locate, prompt_messages

REQUIRED = ("id", "problem", "response")
ON_POLICY = "on_policy"
DEFAULT_WEIGHTS = {"omit_thinking": 0.34, "tamper_thinking_numbers": 0.33, "tamper_answer": 0.33}
MAX_ERRORS_IN_STATS = 20

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode  # same bytes as compass.io.dumps
_raw_decode = json.JSONDecoder().raw_decode


def _decode(line: bytes):
    """json.loads(line), faster for the usual UTF-8 line (same result, same errors)."""
    try:
        text = line.decode("utf-8")
        obj, end = _raw_decode(text)
        if end == len(text) or not text[end:].strip():
            return obj
    except ValueError:
        pass
    return json.loads(line)  # the exact error message (or a line the fast path does not take)


_ROLE_CONTENT = ("role", "content")
_str = encode_basestring  # a str as JSON text, non-ASCII kept (what the encoder above uses)
_SHORT: dict[str, str] = {}


def _short(text: str) -> str:
    """_str for the few distinct short strings of every row (source, lang, strategy, roles, system)."""
    try:
        return _SHORT[text]
    except KeyError:
        enc = _str(text)
        if len(_SHORT) < 10_000 and len(text) < 2_000:
            _SHORT[text] = enc
        return enc


# ---------------------------------------------------------------------------------------------
# Pure core
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything a row's pair depends on (besides the row)."""

    seed: int = 42
    weights: tuple[tuple[str, float], ...] = tuple(DEFAULT_WEIGHTS.items())
    require_tags: bool = False
    on_policy_ratio: float = 0.0
    samples: Mapping[str, list[str]] | None = field(default=None, compare=False)
    is_correct: Callable[[str, str], bool] | None = field(default=None, compare=False)


def make_settings(*, seed=42, weights=None, require_tags=False, on_policy_ratio=0.0, samples=None, is_correct=None) -> Settings:
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(weights) - set(STRATEGIES))
    if unknown:
        raise CompassError(f"pairs.weights: unknown strategy {unknown[0]} (known: {', '.join(STRATEGIES)})")
    ordered = tuple((name, float(weights.get(name, 0.0))) for name in STRATEGIES)
    if any(w < 0 for _, w in ordered) or sum(w for _, w in ordered) <= 0:
        raise CompassError("pairs.weights: weights must be >= 0 and at least one > 0")
    if not 0.0 <= on_policy_ratio <= 1.0:
        raise CompassError(f"pairs.on_policy_ratio must lie in [0, 1], got {on_policy_ratio}")
    if on_policy_ratio > 0 and (samples is None or is_correct is None):
        raise CompassError("pairs.on_policy_ratio > 0 needs on-policy samples (--samples) and a grader")
    return Settings(int(seed), _Weights(ordered), bool(require_tags), float(on_policy_ratio), samples, is_correct)


def id_text(row_id) -> str:
    """A row id as text (ids may be JSON strings or integers; 7 and "7" are the same id)."""
    return row_id if isinstance(row_id, str) else _encode(row_id)


class RowRandom(random.Random):
    """A `random.Random` whose stream is BLAKE2b in counter mode over a key.

    Made for one short stream per row: creating one costs a third of seeding the Mersenne Twister,
    and the stream depends only on the key (not on the Python version, process or hash seed).
    Block 0 is BLAKE2b-512(key), block n >= 1 is BLAKE2b-512(key + n as 8 little-endian bytes); each
    block is 8 little-endian 64-bit words, used last to first. `random` (53 high bits),
    `getrandbits`, `randrange`, `randint` and `choice` are defined here on those words (rejection
    sampling on the high bits, no modulo bias); the rest of random.Random's methods (sample,
    shuffle, ...) run on top of them.
    """

    def __new__(cls, key: bytes):
        return super().__new__(cls, 0)

    def __init__(self, key: bytes):  # no super().__init__(): it would reseed the unused Twister
        self._key, self._block = key, 0
        self._words = list(struct.unpack("<8Q", hashlib.blake2b(key, digest_size=64).digest()))
        self.gauss_next = None

    def seed(self, *args, **kwargs):
        raise TypeError("RowRandom is seeded by its key only")

    def _refill(self) -> int:
        """The next block's words; returns one of them (the others stay for later draws)."""
        self._block += 1
        data = hashlib.blake2b(self._key + self._block.to_bytes(8, "little"), digest_size=64).digest()
        self._words = list(struct.unpack("<8Q", data))
        return self._words.pop()

    def getrandbits(self, k: int) -> int:
        if k <= 0:
            return 0
        out, bits, words = 0, 0, self._words
        while bits < k:
            out, bits = (out << 64) | (words.pop() if words else self._refill()), bits + 64
            words = self._words
        return out >> (bits - k)

    def random(self) -> float:
        words = self._words
        return ((words.pop() if words else self._refill()) >> 11) * (1.0 / 9007199254740992.0)

    def _randbelow(self, n: int) -> int:
        k = n.bit_length()
        if k > 64:
            r = self.getrandbits(k)
            while r >= n:
                r = self.getrandbits(k)
            return r
        shift = 64 - k
        while True:
            words = self._words
            r = (words.pop() if words else self._refill()) >> shift
            if r < n:
                return r

    def randrange(self, start, stop=None, step=1):
        if step != 1 or stop is None or type(start) is not int or type(stop) is not int:
            return super().randrange(start, stop, step)
        if stop <= start:
            raise ValueError(f"empty range for randrange({start}, {stop})")
        return start + self._randbelow(stop - start)

    def randint(self, a: int, b: int) -> int:
        return self.randrange(a, b + 1)

    def choice(self, seq):
        if not len(seq):
            raise IndexError("Cannot choose from an empty sequence")
        return seq[self._randbelow(len(seq))]

    def getstate(self):
        return (self._key, self._block, tuple(self._words))

    def setstate(self, state):
        self._key, self._block, words = state
        self._words = list(words)


def row_rng(seed: int, row_id, stream: str = "") -> RowRandom:
    """The random stream of one row: a function of the seed and the row id only."""
    rid = row_id if type(row_id) is str else id_text(row_id)
    return RowRandom(f"compass-pairs\x1f{seed}\x1f{rid}\x1f{stream}".encode("utf-8"))


def sort_key(row_id) -> bytes:
    """Output order: the id's JSON text as UTF-8 bytes (code-point order of the id for plain ids)."""
    return _str(row_id if type(row_id) is str else id_text(row_id)).encode("utf-8")


_STR_OR_NONE = (str, type(None))


def check_row(row) -> str | None:
    """Why a parsed line is not a usable trace row, or None."""
    if (type(row) is dict and type(row.get("problem")) is str and type(row.get("response")) is str
            and type(row.get("id")) in (str, int) and type(row.get("lang")) in _STR_OR_NONE
            and type(row.get("source")) in _STR_OR_NONE and type(row.get("answer")) in _STR_OR_NONE):
        return None  # the usual row, checked at once
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        return f"missing field(s) {', '.join(missing)}"
    rid = row["id"]
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return "field id must be a string or an integer"
    for k in ("problem", "response"):
        if not isinstance(row[k], str):
            return f"field {k} must be a string"
    for k in ("lang", "source", "answer"):
        if row.get(k) is not None and not isinstance(row[k], str):
            return f"field {k} must be a string or null"
    return None


class _Weights(tuple):
    """The strategy weights, (name, weight) pairs in STRATEGIES order, with the table of the first
    draw precomputed (the same draw `_draw` makes over the positive weights)."""

    def __new__(cls, pairs):
        self = super().__new__(cls, pairs)
        positive = [(n, w) for n, w in pairs if w > 0]
        self._names = [n for n, _ in positive]
        self._ws = [w for _, w in positive]
        self._total = sum(self._ws)
        return self

    def draw(self, rng: random.Random) -> str:
        x = rng.random() * self._total
        for name, w in zip(self._names, self._ws):
            x -= w
            if x < 0:
                return name
        return self._names[-1]  # float round-off


def _draw(rng: random.Random, weights: Mapping[str, float]) -> str:
    total = sum(weights.values())
    x = rng.random() * total
    for name, w in weights.items():
        x -= w
        if x < 0:
            return name
    return next(reversed(weights))  # float round-off


def corrupt(response: str, rng: random.Random, weights: Iterable[tuple[str, float]], loc: Sections | None = None,
            ) -> tuple[str | None, str | None, str]:
    """(rejected, strategy used, strategy first drawn). A drawn strategy that cannot apply falls back
    to another one with a positive weight, drawn again among those left; (None, None, drawn) when none
    applies. Strategies with weight 0 are never used. `loc`: the response's sections when known."""
    loc = loc or locate(response)
    if type(weights) is _Weights:  # the usual case: first draw from the precomputed table
        drawn = weights.draw(rng)
        out = CORRUPTIONS[drawn](response, rng, loc)
        if out is not None and out != response:
            return out, drawn, drawn
        remaining = {name: w for name, w in weights if w > 0 and name != drawn}
    else:
        remaining = {name: w for name, w in weights if w > 0}
        drawn = None
    while remaining:
        name = _draw(rng, remaining)
        drawn = drawn or name
        out = CORRUPTIONS[name](response, rng, loc)
        if out is not None and out != response:
            return out, name, drawn
        del remaining[name]
    return None, None, drawn or ""


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

    A row is drawn for on-policy with probability `ratio` (from its own random stream, so the draw
    does not depend on the other rows). A drawn row takes one of the model's samples that the grader
    marks wrong (`is_correct(sample text, gold answer)` is False; the grader extracts the answer
    from the whole output), chosen at random among the distinct wrong samples in sorted order (so
    the samples' order does not matter). Empty samples and samples equal to the chosen response
    are never used.
    Outcomes: not_drawn, no_samples, no_gold, no_wrong_sample (the model never fails), on_policy.
    """
    rng = row_rng(seed, row["id"], ON_POLICY)
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


def pair_parts(row: dict, settings: Settings, counts: Counter) -> tuple[str, str] | None:
    """(strategy, rejected text) for one (already checked) trace row, or None when the row is
    dropped; `counts` gets `strategy:*`, `dropped:*`, `fallback:*` and `on_policy:*` keys."""
    response = row["response"]
    loc = None
    if settings.require_tags:
        loc, reason = trace_format.parse(response)
        if reason is not None:
            counts[f"dropped:malformed:{reason}"] += 1
            return None
    rejected = None
    if settings.on_policy_ratio > 0 and settings.samples is not None:
        rejected, outcome = mix_on_policy(
            row, samples_for(settings.samples, row["id"]),
            seed=settings.seed, ratio=settings.on_policy_ratio, is_correct=settings.is_correct,
        )
        counts[f"on_policy:{outcome}"] += 1
        strategy = ON_POLICY
    if rejected is None:
        rejected, strategy, drawn = corrupt(response, row_rng(settings.seed, row["id"]), settings.weights, loc)
        if strategy != drawn:
            counts[f"fallback:{drawn}->{strategy or 'none'}"] += 1
        if rejected is None:
            counts["dropped:no_applicable_strategy"] += 1
            return None
    if rejected == response:  # impossible by construction; the guarantee is checked here anyway
        counts["dropped:rejected_equals_chosen"] += 1
        return None
    counts[f"strategy:{strategy}"] += 1
    return strategy, rejected


def _lang(row: dict) -> str:
    return row.get("lang") or detect_lang(row["problem"])


def pair_dict(row: dict, strategy: str, rejected: str) -> dict:
    """The output row (TRL conversational preference format plus id, source, lang, strategy)."""
    lang = _lang(row)
    return {
        "id": row["id"],
        "source": row.get("source"),
        "lang": lang,
        "strategy": strategy,
        "prompt": prompt_messages(row["problem"], lang),
        "chosen": [{"role": "assistant", "content": row["response"]}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _messages_json(messages: list[dict]) -> str:
    if (len(messages) == 2 and type(messages[0]) is dict and type(messages[1]) is dict
            and tuple(messages[0]) == _ROLE_CONTENT and tuple(messages[1]) == _ROLE_CONTENT
            and messages[0]["role"] == "system" and messages[1]["role"] == "user"
            and type(messages[0]["content"]) is str and type(messages[1]["content"]) is str):  # the usual prompt
        return (f'[{{"role":"system","content":{_short(messages[0]["content"])}}},'
                f'{{"role":"user","content":{_str(messages[1]["content"])}}}]')
    parts = []
    for m in messages:
        if type(m) is not dict or tuple(m) != _ROLE_CONTENT or type(m["role"]) is not str or type(m["content"]) is not str:
            return _encode(messages)  # anything unusual: the general encoder
        content = m["content"]
        parts.append(f'{{"role":{_short(m["role"])},"content":{_short(content) if m["role"] == "system" else _str(content)}}}')
    return "[" + ",".join(parts) + "]"


def pair_line(row: dict, strategy: str, rejected: str) -> bytes:
    """`pair_dict` as its JSONL line (no newline): the same bytes as compass.io.dumps gives, built
    from the strings directly (the hot path of the stage)."""
    lang = _lang(row)
    source = row.get("source")
    return (
        f'{{"id":{_str(rid) if type(rid := row["id"]) is str else _encode(rid)},"source":{"null" if source is None else _short(source)},"lang":{_short(lang)},'
        f'"strategy":{_short(strategy)},"prompt":{_messages_json(prompt_messages(row["problem"], lang))},'
        f'"chosen":[{{"role":"assistant","content":{_str(row["response"])}}}],'
        f'"rejected":[{{"role":"assistant","content":{_str(rejected)}}}]}}'
    ).encode("utf-8")


def make_pair(row: dict, settings: Settings, counts: Counter) -> dict | None:
    """The pair of one (already checked) trace row as a dict, or None when the row is dropped."""
    parts = pair_parts(row, settings, counts)
    return None if parts is None else pair_dict(row, *parts)


def summarize(counts: Counter, settings: Settings, *, rows_in: int, pairs_out: int, extra: dict | None = None) -> dict:
    """The stats JSON from the counters (no timings, so it is as deterministic as the pairs)."""

    def section(prefix, keys=()):
        d = {k: 0 for k in keys}
        for k, v in counts.items():
            if k.startswith(prefix):
                d[k[len(prefix):]] = d.get(k[len(prefix):], 0) + v
        return dict(sorted(d.items()))

    fallback_paths = section("fallback:")
    fallbacks = Counter()
    for path, n in fallback_paths.items():
        fallbacks[path.split("->")[0]] += n
    strategies = section("strategy:", STRATEGIES + ((ON_POLICY,) if settings.samples is not None else ()))
    stats = {
        "rows_in": rows_in,
        "pairs_out": pairs_out,
        "strategies": strategies,
        "fallbacks": dict(sorted(fallbacks.items())),
        "fallback_paths": fallback_paths,
        "dropped": section("dropped:"),
        "seed": settings.seed,
        "weights": dict(settings.weights),
        "require_tags": settings.require_tags,
    }
    if settings.samples is not None:
        op = section("on_policy:", ("not_drawn", "no_samples", "no_gold", "no_wrong_sample", ON_POLICY))
        stats["on_policy"] = {
            "ratio": settings.on_policy_ratio,
            "share": round(strategies.get(ON_POLICY, 0) / pairs_out, 6) if pairs_out else 0.0,
            "outcomes": op,
        }
    if extra:
        stats.update(extra)
    return stats


def build_pairs(rows: Iterable[dict], *, seed: int = 42, weights: Mapping[str, float] | None = None, require_tags: bool = False,
                samples: Mapping[str, list[str]] | None = None, is_correct: Callable[[str, str], bool] | None = None,
                on_policy_ratio: float = 0.0) -> tuple[list[dict], dict]:
    """Pairs (sorted as the output file is) and stats for trace rows. A row that is not a usable
    trace raises ValueError (the file reader reports those as file:line instead)."""
    settings = make_settings(seed=seed, weights=weights, require_tags=require_tags, on_policy_ratio=on_policy_ratio,
                             samples=samples, is_correct=is_correct)
    counts: Counter = Counter()
    keyed = []
    n = 0
    for i, row in enumerate(rows):
        n += 1
        problem = check_row(row)
        if problem is not None:
            raise ValueError(f"row {i}: {problem}")
        parts = pair_parts(row, settings, counts)
        if parts is not None:
            keyed.append((sort_key(row["id"]), pair_line(row, *parts), pair_dict(row, *parts)))
    keyed.sort(key=lambda t: (t[0], t[1]))
    pairs = [p for _, _, p in keyed]
    return pairs, summarize(counts, settings, rows_in=n, pairs_out=len(pairs))


# ---------------------------------------------------------------------------------------------
# Streaming a JSONL file through the core (blocks, workers, external sort)
# ---------------------------------------------------------------------------------------------


class Block(NamedTuple):
    """What one block of input lines gives: its pairs sorted by (key, line) as `keys` and one
    `blob` of lines (each ending in a newline, so it can be written as it is), and its counters."""

    keys: list[bytes]
    blob: bytes
    first: tuple[bytes, bytes] | None  # (key, line) of the first and last pair
    last: tuple[bytes, bytes] | None
    duplicates: int  # adjacent equal keys inside the block
    counts: Counter
    rows_in: int
    errors: list[tuple[int, str]]  # (line number, message)

    def items(self) -> list[tuple[bytes, bytes]]:
        return list(zip(self.keys, self.blob.split(b"\n")))


def _process_block(settings: Settings, start_lineno: int, block: bytes, stop_on_error: bool) -> Block:
    """The pairs of one block of whole input lines (a plain function: it runs in the workers)."""
    items, counts, errors, rows_in = [], Counter(), [], 0
    for i, line in enumerate(block.split(b"\n")):
        if not line.strip():
            continue
        rows_in += 1
        try:
            row = _decode(line)
            problem = check_row(row)
            if problem is not None:
                raise ValueError(problem)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError included
            errors.append((start_lineno + i, str(e)))
            counts["dropped:bad_line"] += 1
            if stop_on_error:
                break
            continue
        parts = pair_parts(row, settings, counts)
        if parts is not None:
            items.append((sort_key(row["id"]), pair_line(row, *parts)))
    if not all(map(operator.le, items, items[1:])):
        items.sort()
    keys = [k for k, _ in items]
    duplicates = sum(map(operator.eq, keys, keys[1:]))
    blob = b"".join([v + b"\n" for _, v in items])
    return Block(keys, blob, items[0] if items else None, items[-1] if items else None, duplicates, counts, rows_in, errors)


_WORKER_SETTINGS: Settings | None = None


def _init_worker(settings: Settings) -> None:
    global _WORKER_SETTINGS
    _WORKER_SETTINGS = settings


def _worker_block(start_lineno: int, block: bytes, stop_on_error: bool):
    return _process_block(_WORKER_SETTINGS, start_lineno, block, stop_on_error)


def _blocks(path: Path, block_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(first line number, whole lines) of the file, about `block_bytes` at a time."""
    lineno, rest = 1, b""
    with open(path, "rb") as f:
        while True:
            data = f.read(block_bytes)
            if not data:
                if rest:
                    yield lineno, rest
                return
            data = rest + data if rest else data
            cut = data.rfind(b"\n")
            if cut == -1:
                rest = data
                continue
            block, rest = data[: cut + 1], data[cut + 1 :]
            yield lineno, block
            lineno += block.count(b"\n")


def _line_key(line: bytes) -> tuple[bytes, bytes]:
    """(sort key, line) of an output line (its id is the first field)."""
    return sort_key(_raw_decode(line.decode("utf-8"), 6)[0]), line


class _SortedOutput:
    """Writes the pairs of blocks (each sorted) arriving in input order as one file sorted by
    (key, line), in bounded memory.

    While each block starts at or after the end of the previous one (input already sorted by id,
    the usual case), lines go straight to the output. A block that starts earlier opens another
    sorted run file (up to `max_streams`); after that, blocks go to an in-memory sort that spills
    sorted runs to disk past `spill_bytes`. At the end, if more than one run exists, all are merged
    into the output. The bytes written are the same whichever way they got there.
    """

    def __init__(self, out: Path, work_dir: Path, spill_bytes: int, max_streams: int = 16):
        self.out, self.work_dir, self.limit, self.max_streams = out, work_dir, spill_bytes, max_streams
        self.tmp: Path | None = None
        self.streams: list[Path] = [out]
        self.f = open(out, "wb")
        self.last: tuple[bytes, bytes] | None = None
        self.streamed = 0  # lines written while streaming
        self.duplicates = 0  # adjacent equal keys among them
        self.buffer: list[tuple[bytes, bytes]] = []
        self.size = 0
        self.spills: list[Path] = []
        self.sorting = False

    def _dir(self) -> Path:
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix=".pairs-sort.", dir=self.work_dir))
        return self.tmp

    def add(self, block: Block) -> None:
        if not block.keys:
            return
        if not self.sorting and self.last is not None and block.first < self.last:
            self.f.close()
            if len(self.streams) < self.max_streams:
                self.streams.append(self._dir() / f"stream{len(self.streams):03d}")
                self.f = open(self.streams[-1], "wb")
                self.last = None
            else:
                self.sorting = True
        if self.sorting:
            self.buffer.extend(block.items())
            self.size += len(block.blob) + 150 * len(block.keys)
            if self.size > self.limit:
                self._spill()
            return
        self.duplicates += block.duplicates + (self.last is not None and block.keys[0] == self.last[0])
        self.f.write(block.blob)
        self.streamed += len(block.keys)
        self.last = block.last

    def _spill(self) -> None:
        self.buffer.sort()
        run = self._dir() / f"spill{len(self.spills):05d}"
        with open(run, "wb") as f:
            f.writelines(k + b"\t" + v + b"\n" for k, v in self.buffer)  # keys are JSON text: no raw tab
        self.spills.append(run)
        self.buffer, self.size = [], 0

    @staticmethod
    def _read_stream(path: Path) -> Iterator[tuple[bytes, bytes]]:
        with open(path, "rb") as f:
            for raw in f:
                yield _line_key(raw[:-1])

    @staticmethod
    def _read_spill(path: Path) -> Iterator[tuple[bytes, bytes]]:
        with open(path, "rb") as f:
            for raw in f:
                k, _, v = raw.partition(b"\t")
                yield k, v[:-1]

    def finish(self) -> tuple[int, int]:
        """Complete the output; (lines, duplicate ids)."""
        self.f.close()
        if len(self.streams) == 1 and not self.sorting:
            return self.streamed, self.duplicates
        first = self._dir() / "stream000"
        os.replace(self.out, first)
        self.streams[0] = first
        self.buffer.sort()
        sources = [self._read_stream(p) for p in self.streams] + [self._read_spill(p) for p in self.spills] + [iter(self.buffer)]
        lines = duplicates = 0
        prev = None
        with open(self.out, "wb") as f:
            batch = []
            for key, line in heapq.merge(*sources):
                if key == prev:
                    duplicates += 1
                prev = key
                batch.append(line)
                if len(batch) >= 4096:
                    f.write(b"\n".join(batch) + b"\n")
                    lines += len(batch)
                    batch = []
            if batch:
                f.write(b"\n".join(batch) + b"\n")
                lines += len(batch)
        return lines, duplicates

    def cleanup(self) -> None:
        if not self.f.closed:
            self.f.close()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


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


def run_pairs(traces, out, stats_path, settings: Settings, *, on_bad_line: str = "raise", workers: int = 1,
              progress: bool | None = None, block_bytes: int = 2 << 20, spill_bytes: int = 1 << 30, extra_stats: dict | None = None) -> dict:
    """Read traces JSONL, write the pairs JSONL and the stats JSON (each appears only when whole)."""
    traces, out = Path(traces), Path(out)
    if not traces.is_file():
        raise CompassError(f"{traces}: file not found")
    stop = on_bad_line != "skip"
    size = traces.stat().st_size
    if progress is None:
        progress = sys.stderr.isatty() or size > (256 << 20)
    from tqdm import tqdm

    counts: Counter = Counter()
    errors: list[str] = []
    rows_in = 0
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="pairs", file=sys.stderr, disable=not progress, mininterval=1.0)
    with atomic_output(out) as tmp:
        output = _SortedOutput(Path(tmp), out.parent, spill_bytes)

        def take(result, nbytes):
            nonlocal rows_in
            for lineno, msg in result.errors:
                err = JsonlError(traces, lineno, msg)
                if stop:
                    raise err
                errors.append(str(err))
            output.add(result)
            counts.update(result.counts)
            rows_in += result.rows_in
            bar.update(nbytes)

        try:
            if workers <= 1:
                for lineno, block in _blocks(traces, block_bytes):
                    take(_process_block(settings, lineno, block, stop), len(block))
            else:
                method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
                with multiprocessing.get_context(method).Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
                    pending: deque = deque()
                    for lineno, block in _blocks(traces, block_bytes):
                        pending.append((pool.apply_async(_worker_block, (lineno, block, stop)), len(block)))
                        while len(pending) > 2 * workers:
                            res, n = pending.popleft()
                            take(res.get(), n)
                    while pending:
                        res, n = pending.popleft()
                        take(res.get(), n)
            bar.close()
            pairs_out, duplicates = output.finish()
        finally:
            bar.close()
            output.cleanup()
    stats = summarize(counts, settings, rows_in=rows_in, pairs_out=pairs_out, extra=extra_stats)
    stats["duplicate_ids"] = duplicates
    if errors:
        stats["bad_lines"] = errors[:MAX_ERRORS_IN_STATS]
    write_json(stats_path, stats)
    return stats


# ---------------------------------------------------------------------------------------------
# CLI edge
# ---------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--traces", required=True, type=Path, help="teacher traces JSONL (id, problem, response; lang, source, answer when known)")
    p.add_argument("--out", required=True, type=Path, help="output pairs JSONL (TRL conversational preference format)")
    p.add_argument("--stats", type=Path, default=None, help="statistics JSON (default: OUT with .stats.json)")
    p.add_argument("--seed", type=int, default=None, help="overrides pairs.seed")
    p.add_argument("--require-tags", action=argparse.BooleanOptionalAction, default=None,
                   help="drop rows whose response is not well formed (overrides pairs.require_tags)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (overrides pairs.workers; the output does not depend on it)")
    p.add_argument("--on-bad-line", choices=["raise", "skip"], default=None, help="overrides pairs.on_bad_line")
    p.add_argument("--samples", type=Path, default=None,
                   help='on-policy samples JSONL: {"id": ..., "samples": ["model output", ...]} per prompt')
    p.add_argument("--on-policy-ratio", type=float, default=None, help="overrides pairs.on_policy_ratio (needs --samples)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: on a terminal, or for inputs over 256 MB)")


def main(args, cfg) -> None:
    pcfg = dict(cfg["pairs"])
    for flag, key in (("seed", "seed"), ("require_tags", "require_tags"), ("workers", "workers"),
                      ("on_bad_line", "on_bad_line"), ("on_policy_ratio", "on_policy_ratio")):
        value = getattr(args, flag, None)
        if value is not None:
            pcfg[key] = value
    if pcfg["workers"] < 1:
        raise CompassError(f"--workers must be >= 1, got {pcfg['workers']}")
    samples = is_correct = None
    extra = None
    if args.samples is not None:
        samples, sample_errors = load_samples(args.samples, on_bad_line=pcfg["on_bad_line"])
        from compass.answers import is_correct  # noqa: F811 (only on-policy mode needs the grader)

        if sample_errors:
            extra = {"bad_sample_lines": [str(e) for e in sample_errors[:MAX_ERRORS_IN_STATS]]}
        if pcfg["on_policy_ratio"] <= 0:
            print("compass pairs: --samples given but pairs.on_policy_ratio is 0: synthetic pairs only", file=sys.stderr)
    elif pcfg["on_policy_ratio"] > 0:
        raise CompassError("pairs.on_policy_ratio > 0 needs --samples (the SFT model's sampled responses)")
    settings = make_settings(seed=pcfg["seed"], weights=pcfg["weights"], require_tags=pcfg["require_tags"],
                             on_policy_ratio=pcfg["on_policy_ratio"], samples=samples, is_correct=is_correct)
    stats_path = args.stats or Path(args.out).with_suffix(".stats.json")
    t0 = time.perf_counter()
    stats = run_pairs(args.traces, args.out, stats_path, settings, on_bad_line=pcfg["on_bad_line"],
                      workers=pcfg["workers"], progress=args.progress, extra_stats=extra)
    dt = time.perf_counter() - t0
    if stats.get("bad_lines"):
        print(f"compass pairs: skipped {stats['dropped'].get('bad_line', 0)} malformed line(s), first: {stats['bad_lines'][0]}", file=sys.stderr)
    if stats["pairs_out"] == 0:
        print(f"compass pairs: warning: no pair written (dropped: {stats['dropped']})", file=sys.stderr)
    print(f"{stats['pairs_out']} pairs from {stats['rows_in']} traces in {dt:.1f}s "
          f"({stats['strategies']}; dropped: {stats['dropped']}) -> {args.out}")
