"""Reading image files for on-disk datasets: a corrupt file is a one-line error naming it, never a traceback."""
from __future__ import annotations

from pathlib import Path

from bench.errors import MalformedData, MissingData


def open_image(path: str | Path):
    """The image at `path` as an RGB PIL image, fully decoded (so truncation is caught here, not in a worker)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise MissingData(f"image {path} is missing; re-download the dataset or run `bench data check`")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise MalformedData(f"image {path} is corrupt or unreadable ({type(exc).__name__}); re-download that file")
