"""``simcrop-bench check-method``: passes on every registered method, names each contract violation.

The faulty methods live in a plugin file in ``tmp_path`` and train a tiny in-memory dataset with the
shared loop, so each check runs in seconds; one of them also goes through the CLI.
"""

from __future__ import annotations

import textwrap

import pytest

from simcrop_bench import registry
from simcrop_bench.errors import RegistryError
from simcrop_bench.pretraining.check_method import check_method

from .conftest import run_cli

FAULTY = textwrap.dedent(
    '''
    """Methods that break the contract on purpose, one fault each."""
    import dataclasses

    from simcrop_bench.api import Method

    from simcrop_bench.api import MethodConfig

    from simcrop_bench.api import PretrainingParts
    from simcrop_bench.registry import register_method


    class RandomVolumes:
        """Four random volumes of the encoder's input size (map-style dataset)."""

        def __init__(self, size):
            self.size = size

        def __len__(self):
            return 4

        def __getitem__(self, index):
            import torch
            return {"image": torch.rand(1, *self.size)}


    def build_model(encoder, fault):
        import torch
        from simcrop_bench.models.vit3d import ViT3D

        class Reconstruct(ViT3D):
            def forward(self, batch):
                tokens = ViT3D.forward(self, batch["image"])
                per_sample = tokens.pow(2).mean(dim=(1, 2))
                if fault == "vector":
                    return {"loss": per_sample}  # not reduced to a scalar
                loss = per_sample.mean()
                return {"loss": loss * float("nan") if fault == "nan" else loss}

        return Reconstruct(encoder)


    class Faulty(Method):
        """A method with one contract violation."""

        kind = "self-supervised"
        Config = MethodConfig
        fault = ""

        def build_pretraining(self, ctx):
            encoder = self.config.encoder
            if self.fault == "wide":  # ignores self.config.encoder
                encoder = dataclasses.replace(encoder, embed_dim=encoder.embed_dim + 16)
            volumes = RandomVolumes(self.config.encoder.img_size)
            return PretrainingParts(lambda: build_model(encoder, self.fault), volumes)

        def pretrain(self, ctx):
            import torch
            from simcrop_bench.models.vit3d import export_released
            from simcrop_bench.pretraining.config import PretrainConfig
            from simcrop_bench.pretraining.loop import pretrain

            parts = self.build_pretraining(ctx)
            recipe = PretrainConfig(epochs=1, batch_size=2, effective_batch=None, accum_steps=1, warmup_epochs=0.0,
                                    precision="fp32", checkpoint_every=0)
            model = pretrain(parts.model_factory, parts.dataset, recipe, ctx.workdir).model
            path = ctx.workdir / "encoder.pth"
            if self.fault == "no_file":
                return None
            if self.fault == "bare":
                torch.save(model.state_dict(), path)  # no {"model": ...} wrapper
            elif self.fault == "no_encoder":
                torch.save({"model": {"head.weight": torch.zeros(2, 2)}}, path)
            else:
                torch.save(export_released(model), path)
            return path


    for fault in ("wide", "vector", "nan", "no_file", "bare", "no_encoder"):
        register_method(f"faulty-{fault}")(type(f"Faulty_{fault}", (Faulty,), {"fault": fault}))
    '''
)


@pytest.fixture(scope="module")
def faulty_plugin(tmp_path_factory):
    path = tmp_path_factory.mktemp("plugins") / "faulty_methods.py"
    path.write_text(FAULTY)
    return str(path)


def failures(report, check: str) -> list[str]:
    return [f.message for f in report.violations if f.check == check]


def registered_methods() -> list:
    """Every registered method; SimCroP's ablations (simcrop's code path with other settings) marked slow."""
    registry.discover()
    return [
        pytest.param(name, marks=pytest.mark.slow) if name.startswith("simcrop-") else name
        for name, *_ in registry.entries("methods")
    ]


@pytest.mark.parametrize("name", registered_methods())
def test_passes_on_every_registered_method(name):
    report = check_method(name)
    assert not report.violations, "\n".join(report.lines())
    checks = {f.check for f in report.findings}
    cls = registry.get_method(name)
    if cls.pretrains:
        assert {"export", "encoder", "step"} <= checks  # the built-in methods all provide build_pretraining


def test_wrong_encoder_output_shape(faulty_plugin):
    report = check_method("faulty-wide", plugins=[faulty_plugin])
    (shape,) = failures(report, "encoder")
    assert "output shape (2, 9, 48), expected (2, 9, 32)" in shape
    assert any(
        "does not load into ViT3D(method.encoder)" in m and "shape mismatch" in m for m in failures(report, "export")
    )


def test_loss_that_is_not_a_scalar(faulty_plugin):
    report = check_method("faulty-vector", plugins=[faulty_plugin])
    assert failures(report, "step") == ["loss has shape (2,), not a scalar: reduce it to a 0-dim tensor (e.g. .mean())"]
    assert not failures(report, "encoder")


def test_nan_loss(faulty_plugin):
    report = check_method("faulty-nan", plugins=[faulty_plugin])
    assert failures(report, "step") == ["loss is nan on the first batch"]
    exported = failures(report, "export")
    assert any("logged loss nan at step 1" in m for m in exported)
    assert any("non-finite weights" in m for m in exported)


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("no_file", "pretrain returned None"),
        ("bare", "has no 'model' state dict"),
        ("no_encoder", "lacks the encoder keys patch_embed.proj.*, cls_token, pos_embed, blocks.*, norm.*"),
    ],
)
def test_missing_export(faulty_plugin, fault, expected):
    report = check_method(f"faulty-{fault}", plugins=[faulty_plugin])
    (message,) = failures(report, "export")
    assert expected in message
    assert not failures(report, "step") and not failures(report, "encoder")  # the step itself is fine


def test_cli_prints_one_line_per_violation_and_exits_nonzero(faulty_plugin):
    result = run_cli("check-method", "faulty-vector", "--plugin", faulty_plugin)
    assert result.returncode == 1, result.stderr
    fails = [line for line in result.stdout.splitlines() if line.strip().startswith("FAIL")]
    assert fails and all(line.count("FAIL") == 1 for line in fails)
    assert any("step: loss has shape (2,), not a scalar" in line for line in fails)
    assert "contract violation(s) in faulty-vector" in result.stdout and "Traceback" not in result.stderr

    good = run_cli("check-method", "scratch")
    assert good.returncode == 0 and "scratch satisfies the method contract" in good.stdout
    unknown = run_cli("check-method", "faulty-vectr", "--plugin", faulty_plugin)
    assert (
        unknown.returncode == 2 and "error: unknown method 'faulty-vectr'; did you mean faulty-vector" in unknown.stderr
    )


def test_unknown_method_is_a_registry_error():
    with pytest.raises(RegistryError, match="unknown method 'nosuch'"):
        check_method("nosuch")
