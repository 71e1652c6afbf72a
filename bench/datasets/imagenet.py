"""ImageNet (ID) and its shifts, read from their distributed folder layouts under the data root:

    imagenet/train/<wnid>/*, imagenet/val/<wnid>/*               ID (class index = position of the wnid, sorted)
    imagenetv2-matched-frequency-format-val/<index>/*            V2 (folder names are class indices)
    imagenet-r/<wnid>/*, imagenet-a/<wnid>/*                     200-class subsets: logits restricted to them
    sketch/<wnid>/*                                              ImageNet-Sketch
    objectnet-1.0/images/<folder>/*, objectnet-1.0/mappings/     113 overlapping classes, 1-pixel border cropped
    imagenet-c/<corruption>/5/<wnid>/*                           OOD validation for searching methods

Class subsets and mappings are derived from the datasets' own folder names and mapping files, never typed in.
ObjectNet: folder -> label (folder_to_objectnet_label.json) -> ImageNet names "a; b" (objectnet_to_imagenet_1k.json)
-> 1000-way indices (line numbers of imagenet_to_label_2012_v2); a class's score is the max over its indices.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from bench.datasets import register_dataset
from bench.datasets.base import DatasetAdapter
from bench.datasets.folders import class_folders, data_root, holdout, images_in, require_dir, scan
from bench.datasets.transforms import FileSplit, clip_transform
from bench.errors import BenchError, MalformedData, MissingData
from bench.protocols.imagenet import IMAGENET

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression")
HELD_OUT_PER_CLASS = 10
HINT = "see README's 'Real benchmarks' for where each ImageNet variant goes"


def _templates(name: str) -> tuple[str, ...]:
    from open_clip import zero_shot_metadata as meta

    return tuple(t("{}") for t in getattr(meta, name))


@register_dataset("imagenet")
class ImageNet(DatasetAdapter):
    description = "ImageNet -> ImageNet-V2, -R, -A, -Sketch and ObjectNet (ImageNet-C severity 5 as OOD val)"
    protocol = IMAGENET

    @property
    def templates(self):
        return _templates("OPENAI_IMAGENET_TEMPLATES")

    @property
    def template_sets(self):
        return {"simple": _templates("SIMPLE_IMAGENET_TEMPLATES")}  # 7 templates: quick runs, unofficial

    @property
    def root(self) -> Path:
        return data_root(self.data_root, self.name)

    @property
    def wnids(self) -> list[str]:
        if not hasattr(self, "_wnids"):
            val = require_dir(self.root / "imagenet" / "val", "ImageNet val", HINT)
            self._wnids = class_folders(val)
            if len(self._wnids) != 1000:
                raise MalformedData(f"{val} has {len(self._wnids)} class folders, not 1000; it must hold one folder per wnid")
        return self._wnids

    # The releases' sizes (train: the release's 1,281,167 less the 10 held-out images per class, which are id_val).
    expected_sizes = {"train": 1_271_167, "id_val": 10_000, "id_test": 50_000, "imagenet-v2": 10_000,
                      "imagenet-r": 30_000, "imagenet-a": 7_500, "imagenet-sketch": 50_889, "ood_val": 750_000,
                      "objectnet": 18_574}
    size_variants = {"objectnet": "copies differ (FLYP #7): the release has 50,000 images in 313 classes (one "
                                  "objectnet-1.0.zip unpacks to 50,273), 18,574 of them in the 113 classes scored here; "
                                  "a copy of about 23.7k images in all is a broken download"}
    FOLDERS = ("imagenet", "imagenetv2-matched-frequency-format-val", "imagenet-r", "imagenet-a", "sketch",
               "objectnet-1.0", "imagenet-c")

    def data_folders(self) -> list[Path]:
        return [self.root / name for name in self.FOLDERS if (self.root / name).is_dir()]
    classname_source = "open_clip's ImageNet class names (zero_shot_metadata), in sorted-wnid order"

    @property
    def classnames(self) -> tuple[str, ...]:
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        self.wnids  # noqa: B018  (validates the folder)
        return tuple(IMAGENET_CLASSNAMES)

    def _index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.wnids)}

    def load_split(self, name: str):
        loaders = {"train": self._train, "id_val": self._train, "id_test": self._val, "ood_val": self._imagenet_c,
                   "imagenet-v2": self._v2, "imagenet-r": self._subset, "imagenet-a": self._subset,
                   "imagenet-sketch": self._sketch, "objectnet": self._objectnet}
        if name not in loaders:
            raise BenchError(f"imagenet has no split {name!r}; splits: {', '.join(loaders)}")
        split = loaders[name](name)
        if len(split) == 0:
            raise MissingData(f"imagenet split {name!r} has no images; run `bench data check imagenet`")
        return split

    def _eval(self):
        return clip_transform(self.model_info, train=False)

    def _train(self, name):
        paths, labels = scan(require_dir(self.root / "imagenet" / "train", "ImageNet train", HINT), self._index())
        kept, held = holdout(labels, HELD_OUT_PER_CLASS)
        pick = kept if name == "train" else held
        return FileSplit([paths[i] for i in pick], [labels[i] for i in pick],
                         clip_transform(self.model_info, train=name == "train"))

    def _val(self, name):
        return FileSplit(*scan(self.root / "imagenet" / "val", self._index()), self._eval())

    def _v2(self, name):
        root = require_dir(self.root / "imagenetv2-matched-frequency-format-val", "ImageNet-V2", HINT)
        paths, labels = [], []
        for folder in class_folders(root):
            if not folder.isdigit() or not 0 <= int(folder) < 1000:
                raise MalformedData(f"ImageNet-V2 folder {root / folder} is not a class index 0..999")
            found = images_in(root / folder)
            paths += found
            labels += [int(folder)] * len(found)
        return FileSplit(paths, labels, self._eval())

    def _subset(self, name):
        root = require_dir(self.root / name, name, HINT)
        index = self._index()
        unknown = [w for w in class_folders(root) if w not in index]
        if unknown:
            raise MalformedData(f"{root} has folders that are not ImageNet wnids, e.g. {unknown[0]}")
        split = FileSplit(*scan(root, index), self._eval())
        split.class_subset = sorted(index[w] for w in class_folders(root))
        return split

    def _sketch(self, name):
        return FileSplit(*scan(require_dir(self.root / "sketch", "ImageNet-Sketch", HINT), self._index()), self._eval())

    def _imagenet_c(self, name):
        root = require_dir(self.root / "imagenet-c", "ImageNet-C", HINT)
        paths, labels = [], []
        for corruption in CORRUPTIONS:
            found = scan(require_dir(root / corruption / "5", f"ImageNet-C {corruption} severity 5", HINT), self._index())
            paths += found[0]
            labels += found[1]
        return FileSplit(paths, labels, self._eval())

    def objectnet_classes(self) -> tuple[dict[str, int], list[list[int]]]:
        """folder -> ObjectNet class index, and per class the 1000-way indices it maps to (overlapping classes only)."""
        maps = require_dir(self.root / "objectnet-1.0" / "mappings", "ObjectNet mappings", HINT)
        try:
            folder_to_label = json.loads((maps / "folder_to_objectnet_label.json").read_text())
            label_to_imagenet = json.loads((maps / "objectnet_to_imagenet_1k.json").read_text())
            imagenet_lines = (maps / "imagenet_to_label_2012_v2").read_text().splitlines()
        except (OSError, json.JSONDecodeError) as exc:
            raise MalformedData(f"ObjectNet mapping files in {maps} are missing or malformed ({exc}); re-download ObjectNet")
        line_index = {line.strip(): i for i, line in enumerate(imagenet_lines) if line.strip()}
        folders, groups = {}, []
        for folder, label in sorted(folder_to_label.items()):
            if label not in label_to_imagenet:
                continue  # not one of the classes that overlap ImageNet
            names = [n.strip() for n in label_to_imagenet[label].split(";")]
            missing = [n for n in names if n not in line_index]
            if missing:
                raise MalformedData(f"ObjectNet maps {label!r} to {missing[0]!r}, which imagenet_to_label_2012_v2 does not list")
            folders[folder] = len(groups)
            groups.append(sorted(line_index[n] for n in names))
        return folders, groups

    def _objectnet(self, name):
        folders, groups = self.objectnet_classes()
        images = require_dir(self.root / "objectnet-1.0" / "images", "ObjectNet images", HINT)
        split = FileSplit(*scan(images, folders), self._eval(), pre="border-1px")  # the release's 1-px border
        split.class_groups = groups
        return split

    def scored(self, split: str, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits a split is scored on and the class each of their columns stands for (None: as is):
        ImageNet-R/-A over their class subset, ObjectNet over its classes (max over each one's ImageNet classes)."""
        data = self.split(split)
        if getattr(data, "class_subset", None) is not None:
            subset = torch.tensor(data.class_subset)
            return logits[:, subset], subset
        if getattr(data, "class_groups", None) is not None:
            return torch.stack([logits[:, g].max(dim=1).values for g in data.class_groups], dim=1), None
        return logits, None

