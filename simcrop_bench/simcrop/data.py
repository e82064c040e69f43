"""SimCroP pretraining samples (``simcrop-method.md`` §6): augmented volume + tokenised report.

Each item is drawn under the loop's per-sample seed (``pretraining.rng.SeededItems``), so the
random crop, flips and the 75 % report masking are reproducible per (seed, epoch, index) and
independent of worker count — the clean behaviour of F15, applied in both variants.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from simcrop_bench.data.sentences import simcrop_sentence_ids
from simcrop_bench.data.volume_transforms import apply_chain, training_transforms
from simcrop_bench.simcrop.masking import mask_report_ids
from simcrop_bench.simcrop.text import SpecialIds, report_text, tokenize


class PretrainingDataset(Dataset):
    def __init__(
        self,
        samples: list[dict[str, str]],
        tokenizer: Any,
        *,
        roi: tuple[int, int, int],
        num_tokens: int,
        max_len: int,
        mask_prob: float,
        mask_padding: bool,
        join: str,
    ):
        self.samples = samples
        self.tokenizer = tokenizer
        self.special = SpecialIds.from_tokenizer(tokenizer)
        self.transforms = training_transforms(roi, gaussian_noise=False)  # §5.3: no noise in pretraining
        self.max_len, self.mask_prob, self.mask_padding, self.join = max_len, mask_prob, mask_padding, join
        self.num_tokens = num_tokens

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        # MONAI's random transforms draw from their own state; reseed it from torch's per-sample seed.
        self.transforms.set_random_state(seed=int(torch.randint(0, 2**31 - 1, (1,)).item()))
        image = apply_chain(self.transforms, {"image": sample["image"]})["image"].as_tensor().float()
        findings_ids, findings_mask = tokenize(self.tokenizer, [str(sample["findings"])], self.max_len)
        report = report_text(sample["findings"], sample["impression"], join=self.join)  # "[CLS] " added by tokenize
        report_ids, report_mask = tokenize(self.tokenizer, [report], self.max_len)
        masked, _ = mask_report_ids(
            report_ids,
            report_mask,
            mask_id=self.special.mask,
            sep_id=self.special.sep,
            prob=self.mask_prob,
            mask_padding=self.mask_padding,
            generator=None,
        )
        sentence_ids = simcrop_sentence_ids(findings_ids[0].tolist(), self.special.period, self.special.single_digits)
        return {
            "image": image,
            "findings_ids": findings_ids[0],
            "findings_attention_mask": findings_mask[0],
            "sentence_ids": torch.tensor(sentence_ids, dtype=torch.long),
            "report_ids": report_ids[0],
            "report_masked_ids": masked[0],
            "report_attention_mask": report_mask[0],
            # the image-token masking noise, drawn per sample (same masks for any rank or batch size)
            "mim_noise": torch.rand(self.num_tokens),
        }
