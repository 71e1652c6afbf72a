"""Tiny dataset folders in the real on-disk formats (see shared/reference/data-and-environment.md)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image


def _image(path: Path, rng, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def make_iwildcam(root: Path, seed: int = 0) -> Path:
    """root/iwildcam_v2.0 with 3 species, 4 locations; every split non-empty."""
    rng = np.random.default_rng(seed)
    folder = root / "iwildcam_v2.0"
    folder.mkdir(parents=True)
    (folder / "RELEASE_v2.0.txt").write_text("fixture\n")
    plan = [("train", 48, (0, 1)), ("id_val", 12, (0, 1)), ("id_test", 12, (0, 1)), ("val", 12, (2,)), ("test", 15, (3,))]
    rows, n = [], 0
    for split, count, locations in plan:
        for i in range(count):
            rows.append([split, f"img_{n:04d}.jpg", n % 3, locations[i % len(locations)], n,
                         f"2013-06-{1 + i % 28:02d} 0{i % 10}:00:00.000"])
            _image(folder / "train" / f"img_{n:04d}.jpg", rng)
            n += 1
    _csv(folder / "metadata.csv", ["split", "filename", "y", "location_remapped", "sequence_remapped", "datetime"], rows)
    _csv(folder / "categories.csv", ["y", "category_id", "name"], [[0, 0, "empty"], [1, 2, "tayassu pecari"], [2, 3, "dasyprocta punctata"]])
    return folder


FMOW_PLAN = [  # split, year, count, country ("ZZZ" is not in the mapping, so its region is "Other")
    ("train", 2010, 40, "USA"), ("train", 2011, 20, "FRA"), ("val", 2011, 8, "CHN"), ("test", 2012, 8, "NGA"),
    ("val", 2014, 10, "AUS"), ("test", 2016, 6, "USA"), ("test", 2017, 6, "FRA"), ("test", 2016, 4, "CHN"),
    ("test", 2016, 4, "ZZZ"), ("seq", 2012, 3, "USA"), ("train", 2014, 2, "USA"),
]


def make_fmow(root: Path, seed: int = 0) -> Path:
    """root/fmow_v1.1: 4 categories, regions Americas/Europe/Asia/Africa/Oceania/Other; images for every row."""
    from wilds.datasets.fmow_dataset import categories

    rng = np.random.default_rng(seed)
    folder = root / "fmow_v1.1"
    (folder / "images").mkdir(parents=True)
    (folder / "RELEASE_v1.1.txt").write_text("fixture\n")
    rows, n = [], 0
    for split, year, count, country in FMOW_PLAN:
        for i in range(count):
            rows.append([split, categories[(n * 7) % 4], country, f"{year}-0{1 + i % 9}-01T10:30:00Z"])
            _image(folder / "images" / f"rgb_img_{n}.png", rng, size=(32, 32))
            n += 1
    _csv(folder / "rgb_metadata.csv", ["split", "category", "country_code", "timestamp"], rows)
    _csv(folder / "country_code_mapping.csv", ["alpha-3", "region"],
         [["USA", "Americas"], ["FRA", "Europe"], ["CHN", "Asia"], ["NGA", "Africa"], ["AUS", "Oceania"]])
    return folder


def make_domainnet(root: Path, classes=("aircraft_carrier", "apple", "zebra"), per_split=(8, 3), seed: int = 0) -> Path:
    """root/domainnet/<domain>/<class>/*.jpg and <domain>_{train,test}.txt for real, quickdraw and 4 test domains."""
    rng = np.random.default_rng(seed)
    folder = root / "domainnet"
    for domain in ("real", "quickdraw", "sketch", "painting", "clipart", "infograph"):
        for split, count in zip(("train", "test"), per_split):
            lines = []
            for y, name in enumerate(classes):
                for i in range(count):
                    rel = f"{domain}/{name}/{name}_{split}_{i:03d}.jpg"
                    _image(folder / rel, rng)
                    lines.append(f"{rel} {y}")
            (folder / f"{domain}_{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


IMAGENET_WNIDS = [f"n{i:08d}" for i in range(1000)]


def make_imagenet_family(root: Path, seed: int = 0) -> Path:
    """All six ImageNet-family folders (1000 wnid folders; images only in the first 4 classes) and ImageNet-C."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    rng = np.random.default_rng(seed)
    used = range(4)
    for split, count in (("train", 14), ("val", 3)):
        for i, wnid in enumerate(IMAGENET_WNIDS):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            if i in used:
                for k in range(count):
                    _image(folder / f"{wnid}_{k}.JPEG", rng)
    for k in used:
        for j in range(2):
            _image(root / "imagenetv2-matched-frequency-format-val" / str(k) / f"{j}.jpeg", rng)
    for name, wnids in (("imagenet-r", [0, 1, 3]), ("imagenet-a", [1, 2])):
        for k in wnids:
            for j in range(2):
                _image(root / name / IMAGENET_WNIDS[k] / f"{j}.jpg", rng)
    for k in used:
        _image(root / "sketch" / IMAGENET_WNIDS[k] / "s.JPEG", rng)
    from bench.datasets.imagenet import CORRUPTIONS

    for corruption in CORRUPTIONS:
        for k in used:
            _image(root / "imagenet-c" / corruption / "5" / IMAGENET_WNIDS[k] / "c.JPEG", rng)
    # ObjectNet: two overlapping classes (one maps to two ImageNet classes) and one that does not overlap
    on = root / "objectnet-1.0"
    (on / "mappings").mkdir(parents=True)
    labels = [f"{name}, label {i}" for i, name in enumerate(IMAGENET_CLASSNAMES)]
    (on / "mappings" / "imagenet_to_label_2012_v2").write_text("\n".join(labels) + "\n")
    (on / "mappings" / "folder_to_objectnet_label.json").write_text(json.dumps(
        {"alarm_clock": "Alarm clock", "banana": "Banana", "zipper": "Zipper"}))
    (on / "mappings" / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {"Alarm clock": f"{labels[0]}; {labels[2]}", "Banana": labels[3]}))
    for folder in ("alarm_clock", "banana", "zipper"):
        for j in range(3):
            _image(on / "images" / folder / f"{j}.png", rng, size=(34, 34))
    return root
