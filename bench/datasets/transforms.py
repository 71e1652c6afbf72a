"""CLIP preprocessing for on-disk images (the references' recipe): train = RandomResizedCrop(size, scale 0.9-1,
bicubic); eval = Resize(size, bicubic) + CenterCrop(size); both then ToTensor and the model's normalisation."""
from __future__ import annotations

from torchvision import transforms as T

from bench.models import ModelInfo


def clip_transform(info: ModelInfo, train: bool):
    size = info.image_size
    bicubic = T.InterpolationMode.BICUBIC
    resize = [T.RandomResizedCrop(size, scale=(0.9, 1.0), interpolation=bicubic)] if train else \
        [T.Resize(size, interpolation=bicubic), T.CenterCrop(size)]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(info.mean, info.std)])


def _border_crop(image):
    return image.crop((1, 1, image.width - 1, image.height - 1))


# Fixed pre-steps applied to an image as it is read, before the preprocessing; by name, so that a prepared copy
# records which one its images went through.
PRE_STEPS = {"border-1px": _border_crop}  # ObjectNet's 1-pixel border (its release's red frame)
TENSOR_PRE_STEPS = {"border-1px": lambda image: image[..., 1:-1, 1:-1]}  # the same on a (C, H, W) tensor


class FileSplit:
    """A split of image files with integer labels, read through `open_image` (one-line errors for bad files), or
    from the split's prepared copy where one is attached (bench.datasets.prepared: decoded, pre-step and resize
    already applied)."""

    def __init__(self, paths: list, labels, transform, pre: str | None = None):
        import torch

        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.transform, self.pre = transform, pre
        self.prepared, self.rows = None, None  # the prepared copy, and each example's row in it (None: row i)

    def __len__(self) -> int:
        return len(self.paths)

    def _derive(self, paths, labels, transform, rows, metadata) -> "FileSplit":
        part = FileSplit(paths, labels, transform, self.pre)
        part.prepared, part.rows = self.prepared, rows
        if metadata is not None:
            part.metadata = metadata
        return part

    def subset(self, idx) -> "FileSplit":
        import torch

        rows = (torch.arange(len(self.paths)) if self.rows is None else self.rows)[idx]
        metadata = getattr(self, "metadata", None)
        return self._derive([self.paths[i] for i in idx.tolist()], self.labels[idx], self.transform, rows,
                            None if metadata is None else metadata[idx])

    def with_transform(self, transform) -> "FileSplit":
        """The same examples under another preprocessing (e.g. the evaluation one for frozen features)."""
        return self._derive(self.paths, self.labels, transform, self.rows, getattr(self, "metadata", None))

    def original(self, i):
        """Example i's image from its file, with the split's pre-step (what a prepared copy stores, resized)."""
        from bench.datasets.images import open_image

        image = open_image(self.paths[i])
        return PRE_STEPS[self.pre](image) if self.pre else image

    def __getitem__(self, i):
        if self.prepared is not None:
            image = self.prepared.image(i if self.rows is None else int(self.rows[i]))
        else:
            image = self.original(i)
        return self.transform(image), self.labels[i]
