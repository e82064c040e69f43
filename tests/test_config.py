import pytest

from simcrop_bench.config import stable_hash
from simcrop_bench.errors import ConfigError
from simcrop_bench.run.cell import RunRequest, plan_run


def plan(**kwargs):
    return plan_run(RunRequest(method="scratch", task="lung_seg", **kwargs))


def test_profiles_set_published_and_demo_sizes():
    paper = plan(profile="paper", fraction=10).config
    assert paper.method.encoder.embed_dim == 768 and paper.method.encoder.depth == 12
    assert paper.method.encoder.img_size == (224, 224, 112)
    assert paper.task.roi_size == (96, 96, 48) and paper.task.max_epochs == 400 and paper.task.val_every == 20
    assert plan(profile="paper", fraction=100).config.task.max_epochs == 50
    demo = plan(profile="demo").config
    assert demo.method.encoder.img_size == (64, 64, 32) and demo.task.spacing is None
    assert demo.run.fraction == 100  # the task's largest fraction by default


def test_set_overrides_are_typed():
    cfg = plan(
        overrides=[
            "task.max_epochs=7",
            "method.encoder.img_size=32,32,16",
            "task.spacing=none",
            "task.amp=false",
            "task.lr=3e-4",
        ]
    ).config
    assert cfg.task.max_epochs == 7 and cfg.method.encoder.img_size == (32, 32, 16)
    assert cfg.task.spacing is None and cfg.task.amp is False and cfg.task.lr == pytest.approx(3e-4)
    assert plan(overrides=["method.encoder.pos_embed=A"]).config.method.encoder.pos_embed == "A"


@pytest.mark.parametrize(
    "override, message",
    [
        ("task.max_epoch=3", "unknown config key 'task.max_epoch' .*task.max_epochs"),
        ("task.max_epochs=three", "expected an integer"),
        ("task.amp=maybe", "expected true or false"),
        ("method.encoder.pos_embed=C", "expected one of A, B"),
        ("method.encoder.img_size=1,2", "expected 3 comma-separated values"),
        ("method.encoder=3", "is a group"),
        ("nokey", "expected key=value"),
        ("other.x=1", "keys start with"),
        ("run.seed=3", "use the --seed option"),
        ("method.encoder.embed_dim=90", "not divisible by num_heads"),
        ("task.roi_size=60,64,32", "not divisible by the patch size"),
    ],
)
def test_bad_overrides_are_rejected(override, message):
    with pytest.raises(ConfigError, match=message):
        plan(overrides=[override])


def test_bad_profile_fraction_protocol():
    with pytest.raises(ConfigError, match="--fraction 1: task lung_seg has fractions 10, 100"):
        plan(fraction=1)
    with pytest.raises(ConfigError, match="--profile"):
        plan(profile="huge")
    with pytest.raises(ConfigError, match="--protocol"):
        plan(protocol="x")


def test_hash_is_stable_and_identifies_the_run():
    a, b = plan().config, plan().config
    assert a.config_hash == b.config_hash and len(a.config_hash) == 12
    other_seed = plan(seed=43).config
    assert other_seed.config_hash != a.config_hash
    assert other_seed.cell_hash == a.cell_hash  # seeds of one cell
    changed = plan(overrides=["task.max_epochs=3"]).config
    assert changed.cell_hash != a.cell_hash
    assert stable_hash({"b": 1, "a": [1, 2]}) == stable_hash({"a": [1, 2], "b": 1})
    # The resolved tree is plain JSON: what the record stores.
    tree = a.to_dict()
    assert tree["method"]["name"] == "scratch" and tree["task"]["roi_size"] == [64, 64, 32]
    assert stable_hash(tree) == a.config_hash


def test_simcrop_ablations_are_registered_variants():
    base = plan_run(RunRequest(method="simcrop", task="lung_seg")).config
    noalign = plan_run(RunRequest(method="simcrop-noalign", task="lung_seg")).config
    nofusion = plan_run(RunRequest(method="simcrop-nofusion", task="lung_seg", profile="paper")).config
    k16 = plan_run(RunRequest(method="simcrop-k16", task="lung_seg")).config
    assert base.method.simcrop.alignment == "on" and noalign.method.simcrop.alignment == "off"
    assert nofusion.method.simcrop.fusion == "none" and nofusion.method.encoder.embed_dim == 768
    assert k16.method.simcrop.topk == 16 and base.method.simcrop.topk == 4  # the demo profile's K
    assert noalign.method.train == base.method.train  # everything else unchanged
    assert len({base.cell_hash, noalign.cell_hash, k16.cell_hash}) == 3
