"""DomainNet (Peng et al., 2019) in its distributed layout: `domainnet/<domain>/<class>/<file>` with the split lists
`domainnet/<domain>_train.txt` / `<domain>_test.txt` ("<domain>/<class>/<file> <label>" per line), as FTP's loader
reads them. Train on real, test on sketch, painting, clipart and infograph (FTP's and the feature-protection
study's setting). Choices of ours, documented: ID val = 5 held-out images per class of real_train (DomainNet has no
val split); OOD val (only for methods that search, AutoFT) = quickdraw_train, a domain never tested on.
"""
from __future__ import annotations

from pathlib import Path

from bench.datasets import register_dataset
from bench.datasets.base import DatasetAdapter
from bench.datasets.folders import data_root, holdout, require_dir
from bench.datasets.transforms import FileSplit, clip_transform
from bench.errors import BenchError, MalformedData, MissingData
from bench.protocols.domainnet import DOMAINNET

OOD_TEST_DOMAINS = ("sketch", "painting", "clipart", "infograph")
SPLIT_LISTS = {"train": "real_train", "id_val": "real_train", "id_test": "real_test", "ood_val": "quickdraw_train",
               **{d: f"{d}_test" for d in OOD_TEST_DOMAINS}}
HELD_OUT_PER_CLASS = 5


@register_dataset("domainnet")
class DomainNet(DatasetAdapter):
    description = "DomainNet: train on real photos, test on sketch / painting / clipart / infograph (345 classes)"
    templates = ("a photo of {article} {}.", "a picture of {article} {}.", "{article} {}.")
    protocol = DOMAINNET

    @property
    def folder(self) -> Path:
        return require_dir(data_root(self.data_root, self.name) / "domainnet", "DomainNet",
                           "download it from the DomainNet site into DIR/domainnet (see README) and pass --data-root DIR")

    def data_folders(self) -> list[Path]:
        return [self.folder]

    def read_list(self, name: str) -> tuple[list[Path], list[int]]:
        path = self.folder / f"{name}.txt"
        if not path.is_file():
            raise MissingData(f"DomainNet split list {path} is missing; it comes with the dataset's split files")
        paths, labels = [], []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit() or parts[0].count("/") != 2:
                raise MalformedData(f"{path} line {number} is malformed ({line[:60]!r}); expected '<domain>/<class>/<file> <label>'")
            paths.append(self.folder / parts[0])
            labels.append(int(parts[1]))
        return paths, labels

    classname_source = "DomainNet's class folder names in label order (real_train.txt), '_' as spaces"

    @property
    def classnames(self) -> tuple[str, ...]:
        """Class folder names in label order, read off the real_train list; underscores become spaces."""
        if not hasattr(self, "_classnames"):
            paths, labels = self.read_list("real_train")
            names = {}
            for path, y in zip(paths, labels):
                if names.setdefault(y, path.parent.name) != path.parent.name:
                    raise MalformedData(f"label {y} names two classes in real_train.txt ({names[y]}, {path.parent.name})")
            if sorted(names) != list(range(len(names))):
                raise MalformedData("real_train.txt does not use every label from 0 to the number of classes - 1")
            self._classnames = tuple(names[y].replace("_", " ") for y in range(len(names)))
        return self._classnames

    def load_split(self, name: str):
        if name not in SPLIT_LISTS:
            raise BenchError(f"domainnet has no split {name!r}; splits: {', '.join(SPLIT_LISTS)}")
        paths, labels = self.read_list(SPLIT_LISTS[name])
        if name in ("train", "id_val"):
            kept, held = holdout(labels, HELD_OUT_PER_CLASS)
            pick = kept if name == "train" else held
            paths, labels = [paths[i] for i in pick], [labels[i] for i in pick]
        return FileSplit(paths, labels, clip_transform(self.model_info, train=name == "train"))
