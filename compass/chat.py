"""Chat templates as the stages use them: pinned template arguments, end-of-turn tokens, and the
final answer taken out of a channel-style completion.

A real chat template is more than a format string. llm-jp-4's Harmony-style template writes its own
system turn with *today's date* (`strftime_now`) unless `conversation_start_date` is given, ends a
turn with `<|end|>` while only `<|return|>` is the tokenizer's EOS, and lets the model answer on
several channels (`<|channel|>analysis<|message|>…<|end|>` before `<|channel|>final<|message|>…`).
Everything here follows from the config section `chat` and the tokenizer, so that

* one config renders byte-identical prompts on any day (`template_kwargs`, checked by
  `check_pinned`: a template that still reads the clock is refused, naming the key to set);
* generation stops at every end-of-turn token the template uses (`stop_token_ids`);
* graders, pairs and reports see the final channel only (`parse_completion`); the analysis
  channel is kept apart.

Pure functions over a tokenizer and strings; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from compass.io import CompassError

# Tokens that end a turn in the chat formats in use (Harmony, ChatML, Llama 3, Gemma). Only those
# that a tokenizer's own template writes count for it (`stop_token_ids`).
END_OF_TURN = ("<|end|>", "<|return|>", "<|call|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|eom_id|>")
CHANNEL, MESSAGE, START = "<|channel|>", "<|message|>", "<|start|>"
FINAL_CHANNEL = "final"


@dataclass(frozen=True)
class Completion:
    """One generated answer: the text graded and used downstream, and any analysis-channel text."""

    text: str
    analysis: str = ""


def template_kwargs(chat_cfg: dict) -> dict:
    """The template arguments of the config (`chat.template_kwargs`), as given: strings only, so
    they travel in a dataset column (TRL's `chat_template_kwargs`) and in JSON records."""
    kwargs = dict(chat_cfg.get("template_kwargs") or {})
    for key, value in kwargs.items():
        if not isinstance(value, (str, int, float, bool)) and value is not None:
            raise CompassError(f"chat.template_kwargs.{key}: expected a string, number or boolean, got {value!r}")
    return kwargs


# How templates write the day (`strftime_now(FORMAT)`): ISO, Llama 3's, US, Japanese.
DATE_FORMATS = ("%Y-%m-%d", "%d %b %Y", "%B %d, %Y", "%Y/%m/%d", "%Y年%m月%d日")


def render(tokenizer, messages: list[dict], chat_cfg: dict, *, add_generation_prompt: bool = True, **extra) -> str:
    """The prompt text of one conversation with the config's pinned template arguments."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **template_kwargs(chat_cfg), **extra)


def check_pinned(tokenizer, chat_cfg: dict, probe: list[dict] | None = None, today: date | None = None) -> None:
    """Refuse a template whose output still depends on the day it runs: one that calls `strftime_now`
    and, with the pinned arguments, still writes today's date into a probe conversation."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise CompassError("the tokenizer has no chat template (the stages render every prompt with it)")
    if "strftime_now" not in template:
        return
    probe = probe or [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    text = render(tokenizer, probe, chat_cfg)
    today = today or date.today()
    if any(today.strftime(f) in text for f in DATE_FORMATS):
        names = sorted(_undeclared(template))
        raise CompassError(
            "chat.template_kwargs: the chat template writes the current date (strftime_now), so prompts would "
            "change from day to day; pin it with the argument the template reads instead "
            f"(template variables: {', '.join(names) or 'none'}; llm-jp-4: conversation_start_date)"
        )


def _undeclared(template: str) -> set[str]:
    import jinja2
    from jinja2 import meta

    known = {"messages", "add_generation_prompt", "tools", "documents", "raise_exception", "strftime_now", "range",
             "namespace", "bos_token", "eos_token"}
    try:
        return meta.find_undeclared_variables(jinja2.Environment().parse(template)) - known
    except jinja2.TemplateSyntaxError:
        return set()


def end_of_turn_tokens(tokenizer) -> list[str]:
    """The end-of-turn tokens the tokenizer's chat template writes (and its EOS)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    vocab = tokenizer.get_vocab()
    tokens = [t for t in END_OF_TURN if t in template and t in vocab]
    if tokenizer.eos_token and tokenizer.eos_token not in tokens:
        tokens.append(tokenizer.eos_token)
    return tokens


def stop_token_ids(tokenizer, chat_cfg: dict) -> list[int]:
    """Token ids that end generation: `chat.stop_tokens` when given, else `end_of_turn_tokens`."""
    names = chat_cfg.get("stop_tokens") or end_of_turn_tokens(tokenizer)
    vocab = tokenizer.get_vocab()
    missing = [t for t in names if t not in vocab]
    if missing:
        raise CompassError(f"chat.stop_tokens: {', '.join(missing)} not in the tokenizer's vocabulary")
    return sorted({vocab[t] for t in names})


_HEADER = re.compile(re.escape(CHANNEL) + r"\s*([\w-]+)")


def split_channels(text: str, special_tokens: list[str], stop_tokens: list[str]) -> Completion:
    """The final answer and the analysis of a decoded completion (special tokens kept).

    The text is cut at its first stop token. Channel-style output (`…<|channel|>NAME<|message|>BODY`,
    messages separated by `<|start|>`/end-of-turn tokens) gives the last `final` message as the
    text and the `analysis` messages apart; output without channels is the text itself. Any other
    special token is removed."""
    cut = len(text)
    for tok in stop_tokens:
        i = text.find(tok)
        if i != -1:
            cut = min(cut, i)
    text = text[:cut]
    if MESSAGE not in text:
        return Completion(_strip(text, special_tokens))
    final, analysis = None, []
    for segment in text.split(START):
        if MESSAGE not in segment:
            continue
        header, body = segment.split(MESSAGE, 1)
        m = _HEADER.search(header)
        channel = m.group(1) if m else FINAL_CHANNEL
        body = _strip(body, special_tokens)
        if channel == FINAL_CHANNEL:
            final = body
        else:
            analysis.append(body)
    return Completion(final if final is not None else "", "\n".join(a for a in analysis if a))


def _strip(text: str, special_tokens: list[str]) -> str:
    for tok in special_tokens:
        if tok in text:
            text = text.replace(tok, "")
    return text.strip()


class OutputParser:
    """Generated token ids -> Completion, the same for every backend (decoded by the model's tokenizer)."""

    def __init__(self, tokenizer, chat_cfg: dict):
        self.tokenizer = tokenizer
        self.stop_ids = stop_token_ids(tokenizer, chat_cfg)
        self.stop_tokens = tokenizer.convert_ids_to_tokens(self.stop_ids)
        specials = {t for t, a in ((a.content, a) for a in tokenizer.added_tokens_decoder.values()) if a.special}
        specials.update(tokenizer.all_special_tokens)
        self.special_tokens = sorted(specials, key=len, reverse=True)

    def __call__(self, ids) -> Completion:
        ids = list(ids)
        for i, t in enumerate(ids):
            if t in self.stop_ids:
                ids = ids[:i]
                break
        text = self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return split_channels(text, self.special_tokens, self.stop_tokens)
