"""Sentence splitting of report text: a readable splitter and SimCroP's period rule.

Two rules live here because they differ on purpose:

* :func:`split_sentences` is the project's reference splitter (datasets.md §7.11 step 1), used by the rule-based
  labeller and by the synthetic report index: split after a ``.`` that is followed by whitespace or the end of the
  text (so "3.5 mm" and "12.25 mm" stay whole), except after common abbreviations ("approx.", "e.g.", …); also
  split at bullets (``•``) and newlines. Pieces without a letter or digit (a stray ``"``) are dropped.
* :func:`simcrop_sentence_ids` is the token rule of simcrop-method.md §3.3, which the method applies to WordPiece ids:
  a ``.`` token ends a sentence unless one of its two neighbours is a single-digit token. It therefore keeps
  "3.5" whole but splits "12.25" ("12" "." "25") and every abbreviation, never splits at bullets or newlines, and
  gives id 0 to text after the last qualifying period (a sentence cut by truncation).
  :func:`simcrop_sentence_spans` applies the same rule to raw text through a pre-tokeniser that mimics the
  CXR-BERT one (whitespace, punctuation, digit runs split from letters), so the synthetic generator can predict
  the method's sentence ids without a tokenizer. It cannot see truncation at 512 tokens; the caller must.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Hashable, Sequence

# Lower-case abbreviations whose final period never ends a sentence in :func:`split_sentences`.
ABBREVIATIONS: tuple[str, ...] = ("approx.", "e.g.", "i.e.", "vs.", "dr.", "cf.", "incl.", "resp.", "fig.")
BULLETS = "•\u2023\u25e6"
_CLOSERS = "\"')]\u201d\u2019"  # may follow a final period before the break ("... seen.")
_ALNUM = re.compile(r"[^\W_]")


# ---------------------------------------------------------------- reference splitter


def _is_abbreviation_end(text: str, period: int) -> bool:
    lowered = text[: period + 1].lower()
    for abbreviation in ABBREVIATIONS:
        if lowered.endswith(abbreviation):
            start = period + 1 - len(abbreviation)
            if start == 0 or not text[start - 1].isalnum():
                return True
    return False


def split_sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of :func:`split_sentences`, whitespace-trimmed."""
    spans: list[tuple[int, int]] = []
    start, i, n = 0, 0, len(text)

    def close(end: int) -> None:
        piece = text[start:end]
        if _ALNUM.search(piece):
            left = len(piece) - len(piece.lstrip())
            right = len(piece.rstrip())
            spans.append((start + left, start + right))

    while i < n:
        char = text[i]
        if char in BULLETS or char in "\r\n":
            close(i)
            start = i + 1
        elif char == ".":
            j = i + 1
            while j < n and text[j] in _CLOSERS:
                j += 1
            at_break = j == n or text[j].isspace()
            between_digits = 0 < i < n - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()
            if at_break and not between_digits and not _is_abbreviation_end(text, i):
                close(j)
                start = i = j
                continue
        i += 1
    close(n)  # a last sentence without a period (e.g. truncated text) is kept
    return spans


def split_sentences(text: str) -> list[str]:
    """Sentences of a report section, in reading order (see the module docstring for the rule)."""
    return [text[a:b] for a, b in split_sentence_spans(text)]


# ---------------------------------------------------------------- SimCroP period rule (simcrop-method.md §3.3)


def simcrop_sentence_ids(
    tokens: Sequence[Hashable],
    period: Hashable = ".",
    single_digits: frozenset | set | Sequence = tuple("0123456789"),
) -> list[int]:
    """Sentence id per token by the §3.3 rule; works on token strings or on ids (pass the matching ``period``).

    Positions ``0 … n−2`` are scanned (the last position is never tested, as in the reference, where it is the
    512th token). At a period whose neighbours are both not single-digit tokens, the current counter (from 1) is
    assigned to every token since the previous boundary, the period included. Unassigned tokens keep 0.
    """
    digits = frozenset(single_digits)
    ids = [0] * len(tokens)
    counter, start = 1, 0
    for j in range(len(tokens) - 1):
        if tokens[j] != period:
            continue
        before = tokens[j - 1] if j > 0 else None
        after = tokens[j + 1]
        if before in digits or after in digits:
            continue
        for k in range(start, j + 1):
            ids[k] = counter
        counter, start = counter + 1, j + 1
    return ids


_PRETOKEN = re.compile(r"\d+|[^\W\d_]+|[^\w\s]|_")


def simcrop_pretokens(text: str) -> list[tuple[str, int, int]]:
    """CXR-BERT-like pre-tokens with character spans: lower-cased, split on whitespace and every punctuation
    character, digit runs split from letters. WordPiece later splits words further, but a digit run of length one
    is always the single-digit token, which is all the period rule looks at."""
    out = []
    for match in _PRETOKEN.finditer(text):
        token = unicodedata.normalize("NFKD", match.group()).lower()
        out.append((token, match.start(), match.end()))
    return out


def simcrop_sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences ``1 … S`` that the §3.3 rule finds in ``text`` (text after the last
    qualifying period, sentence id 0, is not returned). Assumes no truncation. The "[CLS] " prefix the method adds
    joins sentence 1 and changes nothing else; neither do its other text replacements (they never touch periods or
    digits)."""
    pretokens = simcrop_pretokens(text)
    # A sentinel so that a period at the very end is tested like any other (in the method it is followed by padding).
    ids = simcrop_sentence_ids([t for t, _, _ in pretokens] + ["[PAD]"])[:-1]
    spans: dict[int, list[int]] = {}
    for sentence_id, (_, a, b) in zip(ids, pretokens):
        if sentence_id:
            span = spans.setdefault(sentence_id, [a, b])
            span[1] = b
    return [tuple(spans[k]) for k in sorted(spans)]


def simcrop_period_boundaries(text: str) -> list[int]:
    """Character offsets of the periods that end a sentence under the §3.3 rule (see :func:`simcrop_sentence_spans`)."""
    return [end - 1 for _, end in simcrop_sentence_spans(text)]
