"""CT-RATE pretraining items for the baselines: the same volumes and augmentation as SimCroP.

Images go through SimCroP's pretraining chain (``simcrop-method.md`` §5.3, no Gaussian noise), so
every method sees identically distributed inputs. Items are drawn under the loop's per-sample seed
(``pretraining.rng.SeededItems``), like SimCroP's: the random crop, the flips and the masking noise
are reproducible per (seed, epoch, index) and independent of the worker and rank count.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from simcrop_bench.data.ctrate import pretraining_samples
from simcrop_bench.data.volume_transforms import apply_chain, training_transforms
from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.simcrop.text import report_text, tokenize


class CTRateVolumes(Dataset):
    """Augmented volume + masking noise, and with a ``tokenizer`` the tokenised report too.

    Item keys: ``image`` ``(C, X, Y, Z)`` in [−1, 1]; ``mim_noise`` ``(N,)`` uniform, one value per patch
    token (masking methods argsort it, §3.1); with a tokenizer ``report_ids`` / ``report_attention_mask``
    ``(max_len,)`` — findings + impression (§3.2 rules, ``join``), prepared and tokenised as in §2.2.
    """

    def __init__(
        self,
        samples: list[dict[str, str]],
        *,
        roi: tuple[int, int, int],
        num_tokens: int,
        tokenizer: Any = None,
        max_len: int = 512,
        join: str = "space",
    ) -> None:
        self.samples = samples
        self.transforms = training_transforms(roi, gaussian_noise=False)  # §5.3: no noise in pretraining
        self.num_tokens = num_tokens
        self.tokenizer, self.max_len, self.join = tokenizer, max_len, join

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        # MONAI's random transforms draw from their own state; reseed it from torch's per-sample seed.
        self.transforms.set_random_state(seed=int(torch.randint(0, 2**31 - 1, (1,)).item()))
        image = apply_chain(self.transforms, {"image": sample["image"]})["image"].as_tensor().float()
        item = {"image": image, "mim_noise": torch.rand(self.num_tokens)}
        if self.tokenizer is not None:
            report = report_text(sample["findings"], sample["impression"], join=self.join)
            ids, mask = tokenize(self.tokenizer, [report], self.max_len)
            item.update(report_ids=ids[0], report_attention_mask=mask[0])
        return item


def ctrate_volumes(
    root: str | Path, encoder: EncoderConfig, *, tokenizer: Any = None, max_len: int = 512, join: str = "space"
) -> CTRateVolumes:
    """The CT-RATE training volumes under ``root`` (never validation: it is the downstream test set)."""
    return CTRateVolumes(
        pretraining_samples(root),
        roi=tuple(encoder.img_size),
        num_tokens=math.prod(encoder.grid()),
        tokenizer=tokenizer,
        max_len=max_len,
        join=join,
    )
