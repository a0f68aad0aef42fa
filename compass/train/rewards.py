"""Rewards of the GRPO stages: plain functions over completions, registered by name.

Each has TRL's reward signature, `f(prompts, completions, completion_ids, **columns) -> list[float]`,
one float per completion, and is a judgement the rest of compass already makes:

* `format`: the trace validator (`compass.trace_format.parse`): 1 for a well-formed response; with
  `partial` (the default), a malformed one earns `section_credit` for each of <Problem>, <Thinking>,
  <Answer> and a non-empty \\boxed{} that the lenient parse still finds, so the reward has a slope
  before the first fully well-formed sample;
* `accuracy`: the answer layer (`compass.answers.is_correct`, the evaluation's grader) against the
  row's gold `answer` column: 1 or 0;
* `length`: 0 up to `target_tokens` completion tokens, falling linearly to -1 at `max_tokens`;
* `repetition`: minus the share of repeated token n-grams in the completion (0 when none repeat;
  n-grams of token ids, so it reads any language alike).

What is judged is the completion's final answer: with a `parser` (`compass.chat.OutputParser`, which
`compass.train.grpo` binds) the token ids are decoded as evaluation decodes them -- cut at the first
end-of-turn token, the `final` channel of a channel-style completion, special tokens removed; without
one, the completion text TRL decoded. Settings (`partial`, `target_tokens`, ...) are keyword
arguments, bound from the config by `bind`.

Pure functions: no I/O, no globals beyond the registry.
"""

from __future__ import annotations

from compass import trace_format


def completion_texts(completions, completion_ids=None, parser=None) -> list[str]:
    """The text each completion is judged on (see the module docstring)."""
    if parser is not None and completion_ids is not None:
        return [parser(ids).text for ids in completion_ids]
    out = []
    for c in completions:
        if isinstance(c, list):  # conversational: [{"role": "assistant", "content": ...}]
            c = c[-1]["content"] if c else ""
        out.append(c if isinstance(c, str) else "")
    return out


def format_score(text: str, partial: bool = True, section_credit: float = 0.2) -> float:
    """1.0 for a well-formed response; else `section_credit` per part found leniently (each tag
    section and a non-empty box: at most 4 x credit, below 1) when `partial`, 0.0 otherwise."""
    sections, reason = trace_format.parse(text)
    if reason is None:
        return 1.0
    if not partial:
        return 0.0
    box = sections.boxed is not None and bool(text[sections.boxed[0] : sections.boxed[1]].strip())
    found = sum(s is not None for s in (sections.problem, sections.thinking, sections.answer)) + box
    return found * section_credit


def format_reward(prompts, completions, completion_ids=None, *, parser=None, partial: bool = True,
                  section_credit: float = 0.2, **columns) -> list[float]:
    return [format_score(t, partial, section_credit) for t in completion_texts(completions, completion_ids, parser)]


def accuracy_reward(prompts, completions, completion_ids=None, *, answer, parser=None, **columns) -> list[float | None]:
    """1.0 when the answer layer finds the gold `answer` in the completion, else 0.0; None (TRL skips
    it) for a row without a gold answer."""
    from compass.answers import is_correct

    texts = completion_texts(completions, completion_ids, parser)
    return [None if gold in (None, "") else float(is_correct(t, gold)) for t, gold in zip(texts, answer, strict=True)]


def length_penalty(n_tokens: int, target_tokens: int, max_tokens: int) -> float:
    if n_tokens <= target_tokens:
        return 0.0
    return -min(1.0, (n_tokens - target_tokens) / max(1, max_tokens - target_tokens))


def length_reward(prompts, completions, completion_ids, *, target_tokens: int = 256, max_tokens: int = 512,
                  parser=None, **columns) -> list[float]:
    return [length_penalty(len(ids), target_tokens, max_tokens) for ids in completion_ids]


def repetition_penalty(ids, ngram: int = 4) -> float:
    """Minus the share of the sequence's token n-grams that repeat an earlier one."""
    grams = [tuple(ids[i : i + ngram]) for i in range(len(ids) - ngram + 1)]
    if not grams:
        return 0.0
    return -(1.0 - len(set(grams)) / len(grams))


def repetition_reward(prompts, completions, completion_ids, *, ngram: int = 4, parser=None, **columns) -> list[float]:
    return [repetition_penalty(list(ids), ngram) for ids in completion_ids]


REWARDS = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "length": length_reward,
    "repetition": repetition_reward,
}


def bind(name: str, parser=None, **settings):
    """The registered reward `name` with its settings (and the output parser) bound, named `name` (TRL logs
    `rewards/{name}/mean`)."""
    fn = REWARDS[name]

    def reward(prompts, completions, completion_ids=None, **columns):
        return fn(prompts, completions, completion_ids, parser=parser, **settings, **columns)

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = fn.__doc__
    return reward
