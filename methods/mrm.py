"""``mrm``: masked record modelling (Zhou et al., Advancing Radiograph Representation Learning with
Masked Record Modeling, ICLR 2023).

MRM restores a masked image (MAE) and a masked report whose decoder sees the image only through one
global token: the average of the projected image tokens, added to every report position — no
cross-attention, no image–text alignment. SimCroP's configuration expresses exactly this structure,
so ``mrm`` is SimCroP with ``fusion = gap_only`` (the GAP token is the decoder's only image input)
and ``alignment = off``, plus MRM's own objective settings:
50 % of the real report tokens masked (never padding), MIM against
per-patch normalised targets averaged over the masked voxels (MRM's ``--norm_pix_loss`` MAE loss).
Everything else is SimCroP's (``methods/simcrop.py``): data, decoders, recipe, export.

Differs from the publication: a 3D ViT on CT; the report path is the frozen offline MiniLM +
SimCroP's trainable projection, fusion layer and 6 BERT layers (MRM trains a 6-layer BERT from its
embeddings and adds the global token at the input); token instead of whole-word report masking; no
2× super-resolution reconstruction target.
"""

from __future__ import annotations

from pathlib import Path

from simcrop_bench import registry


def _simcrop_method() -> type:
    """The ``simcrop`` class of ``methods/simcrop.py``, importing that file first if discovery has not yet
    (discovery imports ``methods/`` alphabetically, so ``mrm.py`` may come first)."""
    registry.load_plugin(str(Path(__file__).with_name("simcrop.py")))
    return registry.get_method("simcrop")


SimCroP = _simcrop_method()


@registry.register_method("mrm")
class MRM(SimCroP):
    """MRM: masked image + report modelling, the report decoder sees the image only via a GAP token."""

    reference = "Zhou et al., Advancing Radiograph Representation Learning with Masked Record Modeling, ICLR 2023"
    variant_overrides = {
        "simcrop.fusion": "gap_only",
        "simcrop.alignment": "off",
        "simcrop.mlm_mask_prob": 0.5,
        "simcrop.mlm_mask_padding": False,
        "simcrop.mim_norm_pix": True,
        "simcrop.mim_loss_norm": "masked_voxels",
    }
