"""The SimCroP pretraining model (``simcrop-method.md`` §2, §3.8).

``SimCroPModel`` *is* the shared :class:`ViT3D` encoder (so encoder weights keep the released key names of
§8/§10 with no prefix, and :func:`export_released` works on it directly) plus:

- the MAE-style vision decoder ``decoder_embed``, ``mask_token``, ``decoder_pos_embed``, ``decoder_blocks``,
  ``decoder_norm``, ``decoder_pred_layer`` (§2.3);
- the frozen text encoder ``bert_encoder`` (§2.2);
- the report path ``bert_feature_proj`` → ``bert_decoder`` (fusion + BERT layers + MLM head) fed with the
  visual memory ``bert_mlp(Z[:, 1:])`` (§2.4, §3.6);
- the alignment heads ``finding_align_img_mlp`` and ``align_text_mlp`` (§2.5), built only with alignment on.

One training step (§3.8): mask and encode the image once; the alignment, MIM and MLM losses all use the
visible tokens of that single pass (F8).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from simcrop_bench.models.config import EncoderConfig
from simcrop_bench.models.pos_embed import sincos_pos_embed
from simcrop_bench.models.vit3d import Block, ViT3D, init_linear_and_norm
from simcrop_bench.simcrop.config import SimCroPConfig
from simcrop_bench.simcrop.fusion import ReportDecoder, text_decoder_config
from simcrop_bench.simcrop.heads import FeatureHead
from simcrop_bench.simcrop.losses import (
    alignment_infonce,
    mim_loss,
    mlm_loss,
    normalise_patches,
    pairwise_cosine,
    sentence_features,
    topk_similarity,
)
from simcrop_bench.simcrop.masking import mask_report_ids, random_patch_masking
from simcrop_bench.simcrop.text import FrozenTextEncoder, SpecialIds, load_text_encoder
from simcrop_bench.simcrop.text import text_encoder_identity as identify_text_encoder
from simcrop_bench.simcrop.text_cache import TextFeatureCache

VISION_LN_EPS = 1e-6


class SimCroPModel(ViT3D):
    """Encoder + vision decoder + frozen text encoder + report decoder + alignment heads.

    ``text_encoder`` is any BERT-style module with ``config.hidden_size``/``config.vocab_size`` returning
    ``last_hidden_state``; pass it with its ``tokenizer`` (or ``special_ids``), or leave both ``None`` to load
    ``cfg.text_encoder_path`` (``None`` = the pinned offline MiniLM). ``text_encoder_identity``
    (:func:`text_encoder_identity` of the files a passed encoder came from) lets training checkpoints leave
    its weights out; it is computed here when the model loads the encoder itself.
    """

    def __init__(
        self,
        encoder_cfg: EncoderConfig,
        cfg: SimCroPConfig | None = None,
        text_encoder: nn.Module | None = None,
        tokenizer: Any = None,
        special_ids: SpecialIds | None = None,
        text_encoder_identity: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(encoder_cfg)
        self.simcrop_cfg = cfg = (cfg or SimCroPConfig()).resolved()
        if text_encoder is None:
            text_encoder, tokenizer = load_text_encoder(cfg.text_encoder_path)
            text_encoder_identity = text_encoder_identity or identify_text_encoder(cfg.text_encoder_path)
        if special_ids is None:
            if tokenizer is None:
                raise ValueError("pass the text encoder's tokenizer or its special_ids")
            special_ids = SpecialIds.from_tokenizer(tokenizer)
        self.tokenizer = tokenizer
        self.special_ids = special_ids
        self.empty_alignment_batches = 0  # F13 counter

        enc_dim, text_dim = encoder_cfg.embed_dim, int(text_encoder.config.hidden_size)
        self._build_vision_decoder(encoder_cfg, cfg.vision_decoder_dim or enc_dim)

        self.bert_encoder = FrozenTextEncoder(text_encoder, cfg.text_encoder_train_mode_dropout, text_encoder_identity)
        # a plain attribute: neither a module nor state, so it never reaches a checkpoint
        self.findings_cache = (
            TextFeatureCache(cfg.text_feature_cache_mb * 2**20, text_encoder_identity)
            if cfg.text_feature_cache_mb > 0
            else None
        )
        dec_dim = cfg.text_decoder_dim or enc_dim
        self.bert_feature_proj = FeatureHead(text_dim, dec_dim)
        if cfg.fusion != "none":  # `none`: the decoder gets no image input, so no visual memory (§7)
            self.bert_mlp = nn.Linear(enc_dim, dec_dim)
        bert_cfg = text_decoder_config(
            dec_dim,
            cfg.text_decoder_heads,
            cfg.text_decoder_ffn,
            cfg.text_decoder_dropout,
            self.bert_encoder.vocab_size,
        )
        self.bert_decoder = ReportDecoder(bert_cfg, cfg.text_decoder_layers, cfg.fusion)

        if cfg.alignment == "on":  # `off`: the alignment heads are not built (§7)
            self.finding_align_img_mlp = FeatureHead(enc_dim, enc_dim)
            self.align_text_mlp = FeatureHead(text_dim, enc_dim)

        for name, child in self.named_children():
            if name not in ("patch_embed", "blocks", "norm", "bert_encoder"):
                init_linear_and_norm(child)  # the encoder was initialised by ViT3D; the text encoder is pretrained
        nn.init.normal_(self.mask_token, std=0.02)
        self.train(self.training)

    def _build_vision_decoder(self, encoder_cfg: EncoderConfig, dim: int) -> None:
        cfg = self.simcrop_cfg
        if dim % cfg.vision_decoder_heads:
            raise ValueError(f"vision decoder width {dim} is not divisible by its {cfg.vision_decoder_heads} heads")
        self.decoder_embed = nn.Linear(encoder_cfg.embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        table = sincos_pos_embed(encoder_cfg.grid(), dim, encoder_cfg.pos_embed, cls_token=True)
        self.decoder_pos_embed = nn.Parameter(torch.from_numpy(table).unsqueeze(0), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(dim, cfg.vision_decoder_heads, encoder_cfg.mlp_ratio, True, 0.0)
            for _ in range(cfg.vision_decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dim, eps=VISION_LN_EPS)
        patch_voxels = encoder_cfg.in_chans * int(torch.tensor(encoder_cfg.patch_size).prod())
        self.decoder_pred_layer = nn.Linear(dim, patch_voxels)

    # ------------------------------------------------------------------ pieces

    def encode_masked(
        self, image: Tensor, generator: torch.Generator | None = None, noise: Tensor | None = None
    ) -> tuple[Tensor, Any]:
        """§2.1 pretraining pass: positions added, masking (§3.1), cls prepended, blocks, ``norm``."""
        if tuple(image.shape[2:]) != tuple(self.cfg.img_size):
            raise ValueError(f"pretraining input must be {tuple(self.cfg.img_size)}, got {tuple(image.shape[2:])}")
        masking = random_patch_masking(self.embed_patches(image), self.simcrop_cfg.mask_ratio, generator, noise)
        latent, _ = self.run_blocks(self.prepend_cls(masking.visible))
        return self.norm(latent), masking

    def decode_image(self, latent: Tensor, ids_restore: Tensor) -> Tensor:
        """§2.3: predicted patch vectors ``(B, N, prod(patch)·C)`` in original token order."""
        y = self.decoder_embed(latent)
        batch, n = ids_restore.shape
        masked = self.mask_token.expand(batch, n - (y.shape[1] - 1), -1)
        tokens = torch.cat([y[:, 1:], masked], dim=1)
        tokens = torch.gather(tokens, 1, ids_restore.unsqueeze(-1).expand(-1, -1, y.shape[-1]))  # unshuffle
        tokens = torch.cat([y[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred_layer(self.decoder_norm(tokens[:, 1:]))

    def alignment(
        self, patch_tokens: Tensor, findings_ids: Tensor, findings_mask: Tensor, sentence_ids: Tensor
    ) -> dict[str, Any]:
        """§3.3–§3.5 on the visible patch tokens of the masked pass (F8)."""
        cfg = self.simcrop_cfg
        words = self.align_text_mlp(self.findings_features(findings_ids, findings_mask)[:, 1:])  # cls dropped
        sentences, valid = sentence_features(words, sentence_ids[:, 1:])
        patches = self.finding_align_img_mlp(patch_tokens)
        clean = cfg.align_padded_slots == "masked"
        pooled, indices, _ = topk_similarity(sentences, patches, cfg.topk, valid if clean else None)  # F7
        sim = pairwise_cosine(sentences, pooled)
        loss, count = alignment_infonce(
            sim, valid, cfg.tau, padded_slots=cfg.align_padded_slots, per_report_mean=cfg.align_per_report_mean
        )
        if count == 0:
            self.empty_alignment_batches += 1
        return {"loss_align": loss, "num_sentences": count, "topk_indices": indices}

    def sentence_patch_similarity(
        self,
        image: Tensor,
        findings_ids: Tensor,
        findings_mask: Tensor,
        sentence_ids: Tensor,
        heads: tuple[nn.Module, nn.Module] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The grounding hook: cosine ``(B, S, N)`` of each findings sentence with every patch of the *unmasked*
        image (the similarity §3.4 ranks), and the valid sentence slots ``(B, S)``.

        ``heads`` = (image head, text head) replaces the alignment heads, e.g. untrained ones for a model built
        without them (``alignment = off``)."""
        similarity, valid, _ = self.visible_similarity(image, findings_ids, findings_mask, sentence_ids, heads)
        return similarity, valid

    def visible_similarity(
        self,
        image: Tensor,
        findings_ids: Tensor,
        findings_mask: Tensor,
        sentence_ids: Tensor,
        heads: tuple[nn.Module, nn.Module] | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """:meth:`sentence_patch_similarity`; with ``noise`` (B, N), on the training view instead: the patches
        that the masked pass keeps (§3.1, as alignment sees them in training), ``(B, S, N_keep)``, and their
        original indices ``(B, N_keep)`` (None for the unmasked image)."""
        image_head, text_head = heads or (self.finding_align_img_mlp, self.align_text_mlp)
        if noise is None:
            patch_tokens, keep = ViT3D.forward(self, image)[:, 1:], None  # `forward` here is the training step
        else:
            latent, masking = self.encode_masked(image, noise=noise)
            patch_tokens, keep = latent[:, 1:], masking.ids_keep
        words = text_head(self.findings_features(findings_ids, findings_mask)[:, 1:])  # cls dropped
        sentences, valid = sentence_features(words, sentence_ids[:, 1:])
        _, _, similarity = topk_similarity(sentences, image_head(patch_tokens), 1)
        return similarity, valid, keep

    def findings_features(self, findings_ids: Tensor, findings_mask: Tensor) -> Tensor:
        """Frozen-encoder states of the unmasked findings, from the cache when they are deterministic."""
        if self.findings_cache is None or self.bert_encoder.dropout_active:
            # faithful F9: dropout is active in the frozen encoder, every call is a new random draw — not cacheable
            return self.bert_encoder(findings_ids, findings_mask)
        return self.findings_cache.encode(self.bert_encoder, findings_ids, findings_mask)

    def report_logits(self, patch_tokens: Tensor, masked_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """§2.4: frozen features of the masked report → ``bert_feature_proj`` → fusion with the image → logits."""
        words = self.bert_feature_proj(self.bert_encoder(masked_ids, attention_mask))
        memory = self.bert_mlp(patch_tokens) if hasattr(self, "bert_mlp") else None
        return self.bert_decoder(words, attention_mask, memory)

    def mask_report(
        self, report_ids: Tensor, attention_mask: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """§3.2 masking, for callers whose batch has no ``report_masked_ids`` (normally the data loader does it)."""
        ids = self.special_ids
        masked, _ = mask_report_ids(
            report_ids,
            attention_mask,
            mask_id=ids.mask,
            sep_id=ids.sep,
            prob=self.simcrop_cfg.mlm_mask_prob,
            mask_padding=self.simcrop_cfg.mlm_mask_padding,
            generator=generator,
        )
        return masked

    # ------------------------------------------------------------------ step

    def forward(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Any]:  # type: ignore[override]
        """One pretraining step's losses (§3.7, §3.8) from a batch of §6 samples.

        Returns ``loss`` (weighted sum), ``loss_mim``, ``loss_mlm``, ``loss_align`` (0 when alignment is off),
        ``num_sentences``, ``mim_pred``/``mim_mask`` and ``mlm_logits``.
        """
        cfg = self.simcrop_cfg
        image = batch["image"]
        latent, masking = self.encode_masked(image, generator, batch.get("mim_noise"))
        patch_tokens = latent[:, 1:]
        report_mask = batch["report_attention_mask"]
        masked_ids = batch.get("report_masked_ids")
        if masked_ids is None:
            masked_ids = self.mask_report(batch["report_ids"], report_mask, generator)

        out: dict[str, Any] = {"loss_align": latent.new_zeros(()), "num_sentences": 0}
        if cfg.alignment == "on":
            out.update(
                self.alignment(
                    patch_tokens, batch["findings_ids"], batch["findings_attention_mask"], batch["sentence_ids"]
                )
            )

        pred = self.decode_image(latent, masking.ids_restore)
        target = self.patchify(image)
        if cfg.mim_norm_pix:
            target = normalise_patches(target)  # F4 clean option; faithful targets are the raw voxels
        loss_mim = mim_loss(pred, target, masking.mask, loss_norm=cfg.mim_loss_norm)

        logits = self.report_logits(patch_tokens, masked_ids, report_mask)
        replaced = (masked_ids == self.special_ids.mask) & report_mask.bool()
        loss_mlm = mlm_loss(logits, batch["report_ids"], replaced, labels_mode=cfg.mlm_labels)

        w_mim, w_mlm, w_align = cfg.loss_weights
        loss = w_mim * loss_mim + w_mlm * loss_mlm
        if cfg.alignment == "on":
            loss = loss + w_align * out["loss_align"]
        out.update(
            loss=loss, loss_mim=loss_mim, loss_mlm=loss_mlm, mim_pred=pred, mim_mask=masking.mask, mlm_logits=logits
        )
        return out
