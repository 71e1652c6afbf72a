"""Training images decoded on the run's device (`bench run --decode device`): the DataLoader workers only read each
file's bytes, and the device decodes the batch (torchvision.io.decode_jpeg: nvJPEG on CUDA, libjpeg-turbo on the
CPU) and applies the training preprocessing as tensor operations. For on-disk training splits without a prepared
copy (a prepared copy needs no decoding at all), when the CPU cores cannot decode as fast as the GPU trains.

It is the same preprocessing as the default path (the split's RandomResizedCrop, resize, normalisation, read from
its transform), not the same pixels: the crop is drawn from a generator seeded by (seed, step, example), and a
tensor bicubic resize rounds differently from PIL's, so a run decoded on the device is recorded as such
(`data.decode`). Files that are not JPEG (PNG, ...) are decoded on the CPU in the main process. (torchvision 0.29
deprecates its image decoders in favour of TorchCodec; they still work, and torch >= 2.3 users have them.)
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision import transforms as T

from bench.config import seed_hash
from bench.datasets.transforms import TENSOR_PRE_STEPS
from bench.errors import BenchError, MissingData

MODES = ("loader", "device")
_JPEG = b"\xff\xd8"


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise BenchError(f"--decode {mode!r} is not one of {', '.join(MODES)}; loader decodes in DataLoader workers "
                         "(default), device decodes JPEGs on the run's device")
    return mode


def decodes_on_device(split, mode: str) -> bool:
    """Whether a training stream over `split` decodes on the device: asked for, on disk, and no prepared copy."""
    return mode == "device" and getattr(split, "images", None) is None and getattr(split, "prepared", None) is None


class EncodedFiles(torch.utils.data.Dataset):
    """(position, file bytes, label): what a worker hands over (bytes: tensors would cross as file descriptors)."""

    def __init__(self, split):
        self.paths, self.labels = split.paths, split.labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, Path(self.paths[i]).read_bytes(), int(self.labels[i])
        except OSError as exc:
            raise MissingData(f"image {self.paths[i]} cannot be read ({exc.strerror or exc}); re-download it or run "
                              "`bench data check`") from None


def collate(items):
    return [i for i, _, _ in items], [b for _, b, _ in items], torch.tensor([y for _, _, y in items])


def _random_crop_box(height: int, width: int, scale, ratio, gen: torch.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (torchvision's algorithm: 10 tries of area and log-uniform aspect, then the
    centre crop at the nearest allowed aspect), drawn from `gen` instead of the global generator."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=gen).item())
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * torch.rand((), generator=gen).item())
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=gen))
            left = int(torch.randint(0, width - w + 1, (), generator=gen))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class DeviceDecoder:
    """Turns a batch of file bytes into the normalised training batch on `device`."""

    def __init__(self, transform, pre: str | None, device: torch.device, seed: int):
        steps = list(getattr(transform, "transforms", [transform]))
        kinds = [type(s) for s in steps]
        if kinds != [T.RandomResizedCrop, T.ToTensor, T.Normalize]:
            raise BenchError("--decode device supports the CLIP training preprocessing (RandomResizedCrop, ToTensor, "
                             f"Normalize), not {' + '.join(k.__name__ for k in kinds)}; use --decode loader")
        crop, _, norm = steps
        self.size, self.scale, self.ratio = list(crop.size), crop.scale, crop.ratio
        self.interpolation, self.antialias = crop.interpolation, crop.antialias
        self.mean = torch.tensor(norm.mean, device=device).view(3, 1, 1)
        self.std = torch.tensor(norm.std, device=device).view(3, 1, 1)
        self.pre = TENSOR_PRE_STEPS[pre] if pre else None
        self.device, self.seed = device, seed

    def decode(self, raw: list[bytes], paths: list) -> list[torch.Tensor]:
        """uint8 (3, H, W) tensors on the device, JPEGs in one batched call."""
        from torchvision.io import ImageReadMode, decode_image, decode_jpeg

        data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in raw]
        out: list = [None] * len(data)
        jpegs = [k for k, b in enumerate(raw) if b[:2] == _JPEG]
        try:
            for k, image in zip(jpegs, decode_jpeg([data[k] for k in jpegs], mode=ImageReadMode.RGB,
                                                   device=self.device) if jpegs else []):
                out[k] = image
        except RuntimeError:
            jpegs = []  # one bad file fails the batch: decode one by one below to name it
        for k in range(len(data)):
            if out[k] is None:
                try:
                    out[k] = decode_image(data[k], mode=ImageReadMode.RGB).to(self.device)
                except RuntimeError as exc:
                    raise BenchError(f"{paths[k]}: cannot decode it as an image ({str(exc).splitlines()[0]}); "
                                     "replace the file or run with --decode loader") from None
        return out

    def __call__(self, positions: list[int], raw: list[bytes], paths: list, step: int) -> torch.Tensor:
        import torchvision.transforms.v2.functional as TF

        batch = []
        for position, image in zip(positions, self.decode(raw, paths)):
            if self.pre is not None:
                image = self.pre(image)
            gen = torch.Generator().manual_seed(seed_hash("device-crop", self.seed, step, position))
            top, left, h, w = _random_crop_box(image.shape[-2], image.shape[-1], self.scale, self.ratio, gen)
            image = TF.resized_crop(image.float(), top, left, h, w, self.size, interpolation=self.interpolation,
                                    antialias=self.antialias)
            batch.append(image.clamp_(0, 255).round_())  # what PIL's uint8 resize keeps
        return (torch.stack(batch) / 255 - self.mean) / self.std


def device_decoded_batches(split, sampler, local: int, seed: int, start_step: int, device, num_workers: int):
    """(images on the device, labels on the device, positions) per step, over the sampler's index stream."""
    decoder = DeviceDecoder(split.transform, split.pre, device or torch.device("cpu"), seed)
    loader = torch.utils.data.DataLoader(EncodedFiles(split), batch_size=local, sampler=sampler, drop_last=True,
                                         num_workers=num_workers, collate_fn=collate,
                                         persistent_workers=num_workers > 0)
    for step, (positions, raw, labels) in enumerate(loader, start=start_step):
        images = decoder(positions, raw, [split.paths[i] for i in positions], step)
        yield images, labels.to(device, non_blocking=True), torch.tensor(positions)
