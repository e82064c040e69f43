"""A bounded in-memory cache of frozen text-encoder outputs for the unmasked findings (§3.8 step 2).

The alignment branch encodes each sample's *unmasked* findings every step. When the frozen encoder runs
without dropout (clean variant F9, or any eval-mode pass) that output is a pure function of the token ids,
the padding mask, the encoder's files and the autocast dtype, so it is computed once per distinct report and
reused. With dropout active (faithful F9 in training) every call is a fresh random draw and nothing may be
cached; the caller checks :attr:`FrozenTextEncoder.dropout_active` first. The masked report (MLM input)
changes every step and is never cached.

Entries are whole ``(L, H)`` rows on the encoder's device, evicted least-recently-used beyond ``max_bytes``.
New rows are encoded at the incoming batch shape (padded with a repeated row), because kernels may pick their
algorithm by shape: then a cached row is what the uncached call would return (bit-exact on CPU, tested), and an
exactly resumed run, whose cache starts empty, continues bit for bit. It pays off when the distinct reports
fit in ``max_bytes`` (the demo: 8 reports, 6 MiB); on full CT-RATE (46k reports × 512 × 768 floats) it does
not, and then costs what the uncached call costs.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


class TextFeatureCache:
    """LRU map ``hash(identity, autocast, ids, mask)`` → encoder output row."""

    def __init__(self, max_bytes: int, identity: Any = None) -> None:
        self.max_bytes = int(max_bytes)
        self._salt = json.dumps(identity, sort_keys=True, default=str).encode()
        self._rows: OrderedDict[bytes, Tensor] = OrderedDict()
        self.bytes = 0
        self.hits = self.encoded_rows = 0

    def __len__(self) -> int:
        return len(self._rows)

    def _keys(self, ids: Tensor, mask: Tensor) -> list[bytes]:
        device = ids.device.type
        amp = (torch.is_autocast_enabled(device), str(torch.get_autocast_dtype(device)))
        ids_np, mask_np = ids.detach().cpu().numpy(), mask.detach().cpu().numpy()
        prefix = hashlib.sha256(self._salt + repr(amp).encode()).digest()
        return [hashlib.sha256(prefix + i.tobytes() + m.tobytes()).digest() for i, m in zip(ids_np, mask_np)]

    def encode(self, encoder: Callable[[Tensor, Tensor], Tensor], ids: Tensor, mask: Tensor) -> Tensor:
        """``encoder(ids, mask)`` with rows seen before taken from the cache; distinct new rows run once."""
        keys = self._keys(ids, mask)
        new: dict[bytes, int] = {}
        for row, key in enumerate(keys):
            if key not in self._rows and key not in new:
                new[key] = row
        if new:
            rows = list(new.values())
            # run at the incoming batch shape (padded with a repeated row): a row's value then does not depend
            # on how many rows missed, so cached, uncached and resumed runs agree bit for bit
            padded = rows + rows[:1] * (len(keys) - len(rows))
            fresh = encoder(ids[padded], mask[padded])
            self.encoded_rows += len(rows)
            produced = {key: fresh[i] for i, key in enumerate(new)}
        else:
            produced = {}
        self.hits += len(keys) - len(new)
        out = torch.stack([produced[key] if key in produced else self._rows[key] for key in keys])
        for key in keys:
            if key in self._rows:
                self._rows.move_to_end(key)
        for key, value in produced.items():
            self._store(key, value.detach().clone())
        return out

    def _store(self, key: bytes, value: Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        self._rows[key] = value
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._rows.popitem(last=False)
            self.bytes -= evicted.numel() * evicted.element_size()
