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


class FileSplit:
    """A split of image files with integer labels, read through `open_image` (one-line errors for bad files)."""

    def __init__(self, paths: list, labels, transform):
        import torch

        self.paths = list(paths)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, idx) -> "FileSplit":
        part = FileSplit([self.paths[i] for i in idx.tolist()], self.labels[idx], self.transform)
        if getattr(self, "metadata", None) is not None:
            part.metadata = self.metadata[idx]
        return part

    def with_transform(self, transform) -> "FileSplit":
        """The same examples under another preprocessing (e.g. the evaluation one for frozen features)."""
        part = FileSplit(self.paths, self.labels, transform)
        if getattr(self, "metadata", None) is not None:
            part.metadata = self.metadata
        return part

    def __getitem__(self, i):
        from bench.datasets.images import open_image

        return self.transform(open_image(self.paths[i])), self.labels[i]
