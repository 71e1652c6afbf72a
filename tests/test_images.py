import pytest
from PIL import Image

from bench.datasets.images import open_image
from bench.errors import BenchError


def test_reads_a_good_image_as_rgb(tmp_path):
    path = tmp_path / "ok.png"
    Image.new("L", (5, 4), color=7).save(path)
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (5, 4) and image.getpixel((0, 0)) == (7, 7, 7)


def test_corrupt_truncated_and_missing_images_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"definitely not a jpeg")
    with pytest.raises(BenchError, match="garbage.jpg is corrupt"):
        open_image(garbage)
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), color=(200, 10, 10)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(BenchError, match="truncated.jpg is corrupt"):
        open_image(truncated)
    with pytest.raises(BenchError, match="missing.png is missing"):
        open_image(tmp_path / "missing.png")
