"""`bench run --decode device`: training JPEGs decoded on the run's device (here the CPU, the same torchvision calls
nvJPEG serves on CUDA): the decode is PIL's pixels, the crop follows RandomResizedCrop's rules from a seeded
generator, the stream is deterministic and resumable, and bad input fails in one line."""
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from bench.cli import main
from bench.datasets.images import open_image
from bench.datasets.transforms import PRE_STEPS, FileSplit, clip_transform
from bench.engine.batches import train_batches
from bench.engine.device_decode import DeviceDecoder, _random_crop_box, decodes_on_device
from bench.errors import BenchError
from bench.models import load_clip
from conftest import run_method
from fixtures import make_iwildcam

SETTINGS = ["steps=3", "eval_every=3", "batch_size=8", "warmup=1", "eval_batch_size=16"]


@pytest.fixture(scope="module")
def info():
    return load_clip("bench-tinyclip", "tinyshift")[1]


def _photo(path, size=(120, 90), seed=0, fmt="JPEG"):
    """A smooth image (JPEG-friendly) with some texture, so resizing differences show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([x * 2, y * 2, (x + y)], axis=-1) % 256
    noise = rng.integers(0, 40, base.shape)
    Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(path, fmt, quality=90)
    return path


@pytest.fixture
def split(tmp_path, info):
    paths = [_photo(tmp_path / f"{i}.jpg", seed=i) for i in range(12)]
    return FileSplit(paths, [i % 3 for i in range(12)], clip_transform(info, train=True))


@pytest.mark.parametrize("h,w", [(90, 120), (30, 40), (7, 300), (300, 7)])
def test_crop_boxes_keep_the_random_resized_crop_rules(h, w):
    scale, ratio = (0.9, 1.0), (3 / 4, 4 / 3)
    for seed in range(50):
        top, left, ch, cw = _random_crop_box(h, w, scale, ratio, torch.Generator().manual_seed(seed))
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
        if (h, w) in ((90, 120), (30, 40)):  # a box of the asked area and aspect exists: always found here
            assert 0.9 * h * w * 0.97 <= ch * cw <= h * w and 3 / 4 * 0.9 <= cw / ch <= 4 / 3 * 1.1


def test_the_fallback_is_the_centre_crop_at_the_nearest_aspect():
    # 10 x 1000 admits no box of aspect <= 4/3 with 90 % of the area: width round(10 * 4/3) = 13, centred
    assert _random_crop_box(10, 1000, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0)) == (0, 493, 10, 13)
    assert _random_crop_box(1000, 10, (0.9, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0)) == (493, 0, 13, 10)


def test_the_decode_is_pil_s_pixels_and_the_preprocessing_close_to_the_loader_s(split, info):
    decoder = DeviceDecoder(split.transform, None, torch.device("cpu"), seed=0)
    raw = [p.read_bytes() for p in split.paths]
    decoded = decoder.decode(raw, split.paths)
    for path, image in zip(split.paths, decoded):
        assert torch.equal(image, torch.from_numpy(np.asarray(open_image(path))).permute(2, 0, 1))
    # The whole image resized: the tensor bicubic against PIL's, in 0-255 steps after normalisation
    full = DeviceDecoder(T.Compose([T.RandomResizedCrop(info.image_size, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3),
                                                        interpolation=T.InterpolationMode.BICUBIC),
                                    T.ToTensor(), T.Normalize(info.mean, info.std)]), None, torch.device("cpu"), 0)
    ours = full(list(range(12)), raw, split.paths, step=0)
    theirs = torch.stack([T.Compose([T.Resize((info.image_size, info.image_size), interpolation=T.InterpolationMode.BICUBIC),
                                     T.ToTensor(), T.Normalize(info.mean, info.std)])(open_image(p)) for p in split.paths])
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    gap = ((ours - theirs) * std * 255).abs()
    assert gap.max() <= 6.01 and gap.mean() <= 1.0
    assert ours.shape == (12, 3, info.image_size, info.image_size)


def test_the_stream_is_deterministic_resumable_and_keeps_the_loader_s_labels(split):
    def take(start, n, decode, workers=0):
        stream = train_batches(split, 4, seed=7, start_step=start, num_workers=workers, with_indices=True,
                               decode=decode)
        return [next(stream) for _ in range(n)]

    first, again, resumed = take(0, 4, "device"), take(0, 4, "device", workers=2), take(2, 2, "device")
    loader = take(0, 4, "loader")
    for a, b in zip(first, again):
        assert all(torch.equal(x, y) for x, y in zip(a, b))  # workers change nothing
    for a, b in zip(first[2:], resumed):
        assert all(torch.equal(x, y) for x, y in zip(a, b))  # step 2 onwards, as if never interrupted
    for a, b in zip(first, loader):
        assert torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])  # the same examples in the same order
        assert a[0].shape == b[0].shape
    assert not torch.equal(first[0][0], first[1][0])


def test_another_seed_draws_other_crops_and_the_crop_depends_on_the_step(split):
    decoder, other = (DeviceDecoder(split.transform, None, torch.device("cpu"), seed=s) for s in (0, 1))
    raw = [split.paths[0].read_bytes()]
    a, b, c = decoder([0], raw, split.paths[:1], 0), other([0], raw, split.paths[:1], 0), decoder([0], raw, split.paths[:1], 1)
    assert not torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, decoder([0], raw, split.paths[:1], 0))


def test_png_files_and_the_border_step_are_decoded_like_the_loader(tmp_path, info):
    path = _photo(tmp_path / "a.png", fmt="PNG")
    decoder = DeviceDecoder(clip_transform(info, train=True), "border-1px", torch.device("cpu"), 0)
    (image,) = decoder.decode([path.read_bytes()], [path])
    expected = np.asarray(open_image(path))
    assert torch.equal(decoder.pre(image), torch.from_numpy(expected).permute(2, 0, 1)[:, 1:-1, 1:-1])
    assert np.array_equal(np.asarray(PRE_STEPS["border-1px"](open_image(path))), expected[1:-1, 1:-1])


def test_a_corrupt_file_is_named_in_one_line(split):
    bad = split.paths[5]
    bad.write_bytes(bad.read_bytes()[:40])  # a truncated download
    decoder = DeviceDecoder(split.transform, None, torch.device("cpu"), 0)
    with pytest.raises(BenchError) as caught:
        decoder(list(range(6)), [p.read_bytes() for p in split.paths[:6]], split.paths[:6], 0)
    message = str(caught.value)
    assert str(bad) in message and "\n" not in message and "--decode loader" in message


def test_other_preprocessing_and_splits_already_in_memory_or_prepared_are_not_decoded_on_the_device(split, info):
    with pytest.raises(BenchError, match="--decode loader"):
        DeviceDecoder(clip_transform(info, train=False), None, torch.device("cpu"), 0)
    assert decodes_on_device(split, "device") and not decodes_on_device(split, "loader")
    split.prepared = object()  # a prepared copy: nothing left to decode
    assert not decodes_on_device(split, "device")


def test_a_fine_tune_decoded_on_the_device_is_recorded_as_such(tmp_path):
    data = tmp_path / "data"
    make_iwildcam(data)
    kwargs = dict(dataset="iwildcam", data_root=data, model="bench-tinyclip", pretrained="tinyshift",
                  settings=SETTINGS, base_settings=False)
    plain, _ = run_method("ft", tmp_path / "plain", **kwargs)
    device, _ = run_method("ft", tmp_path / "device", decode="device", **kwargs)
    assert device["run_id"] == plain["run_id"]  # how pixels are decoded is not a hyperparameter
    assert device["data"]["decode"] == "device" and "decode" not in plain["data"]
    assert device["history"][-1]["step"] == plain["history"][-1]["step"] == 3
    zeroshot, _ = run_method("zeroshot", tmp_path / "zs", decode="device", **kwargs)
    assert "decode" not in zeroshot["data"]  # nothing was trained: nothing decoded on the device


def test_an_unknown_decode_mode_exits_2_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", "--method", "ft", "--dataset", "tinyshift", "--decode", "gpu", "--out", str(out)]) == 2
    assert "--decode" in capsys.readouterr().err and not out.exists()


def test_a_missing_file_is_named_in_one_line(split):
    split.paths[3].unlink()
    with pytest.raises(BenchError) as caught:
        next(train_batches(split, 12, seed=0, decode="device"))
    assert str(split.paths[3]) in str(caught.value) and "\n" not in str(caught.value)
