import pytest
import torch
from safetensors.torch import save_file

from bench.errors import BenchError
from bench.models import _load_shipped, activation_of, load_clip, open_clip_module


def test_activation_is_detected():
    oc = open_clip_module()
    assert activation_of(oc.create_model("bench-tinyclip")) == "gelu"
    assert activation_of(oc.create_model("bench-tinyclip", force_quick_gelu=True)) == "quick_gelu"


def test_reload_checks_architecture_and_activation(tmp_path):
    oc = open_clip_module()
    model = oc.create_model("bench-tinyclip")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    good = tmp_path / "good.safetensors"
    save_file(state, str(good), metadata={"arch": "bench-tinyclip", "activation": "gelu"})
    loaded, sha = _load_shipped(oc, "bench-tinyclip", good)
    assert torch.equal(loaded.visual.conv1.weight, model.visual.conv1.weight) and len(sha) == 64
    wrong = tmp_path / "wrong.safetensors"
    save_file(state, str(wrong), metadata={"arch": "bench-tinyclip", "activation": "quick_gelu"})
    with pytest.raises(BenchError, match="activation='quick_gelu'"):
        _load_shipped(oc, "bench-tinyclip", wrong)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 10)
    with pytest.raises(BenchError, match="unreadable"):
        _load_shipped(oc, "bench-tinyclip", broken)


def test_model_info_records_what_was_loaded():
    _, info = load_clip("bench-tinyclip", "tinyshift")
    assert (info.arch, info.pretrained, info.activation, info.image_size) == ("bench-tinyclip", "tinyshift", "gelu", 32)
    _, random_info = load_clip("bench-tinyclip", None)
    assert random_info.pretrained is None and random_info.weights_sha256 is None
