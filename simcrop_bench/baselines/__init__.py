"""Shared code of the baseline methods (``methods/mae.py``, ``simmim.py``, ``clip.py``, ``mrm.py``).

Every baseline pretrains the shared :class:`~simcrop_bench.models.vit3d.ViT3D` on the CT-RATE
training volumes with the generic loop and exports it in the released SimCroP format, so that the
downstream tasks treat all methods alike. Method files hold the config, profiles and reference;
the models live here because method files import no torch. The demo recipe every method shares is
:data:`simcrop_bench.pretraining.config.DEMO_RECIPE`.

Modules (one concept each; import them directly, this package imports no torch):

* :mod:`.data`         — CT-RATE volumes with SimCroP's augmentation, optionally with the report;
* :mod:`.mae`          — masked autoencoder on SimCroP's vision decoder;
* :mod:`.simmim`       — mask tokens through the encoder, linear head, L1 on masked voxels;
* :mod:`.clip`         — volume–report InfoNCE with a frozen text encoder and learnable temperature;
* :mod:`.training`     — train with the shared loop and export the encoder.
"""
