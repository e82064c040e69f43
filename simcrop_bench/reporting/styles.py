"""One colour and one marker per method, the same in every figure and report.

A method's marker comes from its table family (:func:`simcrop_bench.reporting.tables.layouts.family_of`:
no pretraining, self-supervised, vision-language, SimCroP, other) and its colour from its name: the
methods of :data:`~simcrop_bench.reporting.tables.layouts.METHOD_ORDER` have fixed colours, any other
name a colour chosen by a hash of the name. Neither depends on which other methods a figure shows,
so scratch is the same grey square in every efficiency curve of every report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from simcrop_bench.reporting.tables.layouts import family_of

FAMILY_MARKERS = {"none": "s", "self-supervised": "o", "vision-language": "^", "simcrop": "D", "other": "v"}
# Colour-blind-friendly (Okabe–Ito and Tableau) fixed colours for the registered methods.
METHOD_COLORS = {
    "scratch": "#7f7f7f",
    "mae": "#0072B2",
    "simmim": "#56B4E9",
    "clip": "#009E73",
    "mrm": "#F0E442",
    "simcrop": "#D55E00",
    "simcrop-noalign": "#CC79A7",
    "simcrop-nofusion": "#E69F00",
    "simcrop-k8": "#8c564b",
    "simcrop-k16": "#9467bd",
    "simcrop-k64": "#bcbd22",
}
# Other names: a hash of the name picks one of these (distinct from the fixed ones).
SPARE_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#17becf", "#e377c2", "#393b79", "#637939")


@dataclass(frozen=True)
class MethodStyle:
    color: str
    marker: str


def method_style(method: str, kinds: Mapping[str, str] | None = None) -> MethodStyle:
    """The colour and marker of ``method`` (``kinds``: method -> registry kind, for the family)."""
    color = METHOD_COLORS.get(method)
    if color is None:
        digest = int(hashlib.sha256(method.encode("utf-8")).hexdigest(), 16)
        color = SPARE_COLORS[digest % len(SPARE_COLORS)]
    return MethodStyle(color, FAMILY_MARKERS[family_of(method, kinds or {})])
