import pytest

from simcrop_bench.data.ctrate import pretraining_samples
from simcrop_bench.data.synthetic.ctrate import write_ctrate_twin
from simcrop_bench.errors import DataError


def test_pretraining_samples_use_training_volumes_with_reports(tmp_path):
    root = tmp_path / "ctrate"
    write_ctrate_twin(root, n_cases=3, layout="simcrop")
    samples = pretraining_samples(root)
    assert samples and all(s["volume_name"].startswith("train_") for s in samples)
    assert all(s["findings"] and s["patient_id"].startswith("train_") for s in samples)
    one = samples[0]["volume_name"]
    assert [s["volume_name"] for s in pretraining_samples(root, volumes=[one])] == [one]
    with pytest.raises(DataError, match="not found"):
        pretraining_samples(root, volumes=["train_99999_a_1.nii.gz"])
