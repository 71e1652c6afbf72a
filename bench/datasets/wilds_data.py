"""WILDS iWildCam (v2.0) and FMoW (v1.1) through the `wilds` package: its split logic, metadata and official
evaluators; images are read by bench (one-line errors for corrupt files). `import wilds` asks PyPI for a newer
version in a background thread, so it is imported only when a WILDS dataset is actually used.

FMoW's group metrics call `torch_scatter`, which `wilds` does not declare and which PyPI ships only as source;
`avg_over_groups` is replaced by a pure-torch equivalent (index_add_), tested to give the same numbers as a direct
computation.
"""
from __future__ import annotations

import warnings
from abc import abstractmethod
from functools import cached_property
from pathlib import Path

import torch

from bench.datasets import register_dataset
from bench.datasets.base import DatasetAdapter
from bench.datasets.folders import data_root
from bench.datasets.transforms import FileSplit, clip_transform
from bench.errors import BenchError, MalformedData, MissingData
from bench.protocols.wilds import FMOW, IWILDCAM
from bench.results import metrics as shared_metrics

SPLITS = {"train": "train", "id_val": "id_val", "id_test": "id_test", "ood_val": "val", "ood_test": "test"}
IWILDCAM_TEMPLATES = ("a photo of {}.", "{} in the wild.")


FMOW_TEMPLATES = (
    # WiSE-FT's fmow_template.py: the names keep their '_' except in the two templates that add an article
    "satellite photo of a {}.", "aerial photo of a {}.", "satellite photo of {article} {spaced}.",
    "aerial photo of {article} {spaced}.",
    *(f"{kind} photo of a {{}} in {where}." for where in ("asia", "africa", "the americas", "europe", "oceania")
      for kind in ("satellite", "aerial")),
    "a photo of a {}.", "{}.",
)


def avg_over_groups(v: torch.Tensor, g: torch.Tensor, n_groups: int):
    """Mean of v per group index in [0, n_groups) and the group counts (what wilds does with torch_scatter)."""
    assert v.device == g.device and v.numel() == g.numel()
    counts = torch.zeros(n_groups, device=g.device, dtype=torch.float).index_add_(0, g, torch.ones_like(g, dtype=torch.float))
    sums = torch.zeros(n_groups, device=v.device, dtype=torch.float).index_add_(0, g, v.float())
    return sums / counts.clamp_min(1), counts


def _patch_wilds_group_means() -> None:
    try:
        import torch_scatter  # noqa: F401  (the compiled original is there: keep it)
        return
    except ImportError:
        pass
    from wilds.common import utils
    from wilds.common.metrics import all_metrics, loss, metric

    for module in (utils, all_metrics, loss, metric):
        module.avg_over_groups = avg_over_groups


class WildsAdapter(DatasetAdapter):
    wilds_name = ""
    version = ""

    def __init__(self, model_info, data_root_dir=None):
        super().__init__(model_info, data_root_dir)
        self._wilds = None

    @property
    def folder(self) -> Path:
        return data_root(self.data_root, self.name) / f"{self.wilds_name}_v{self.version}"

    def wilds_dataset(self):
        if self._wilds is None:
            folder = self.folder
            if not (folder / f"RELEASE_v{self.version}.txt").is_file():
                raise MissingData(f"{self.wilds_name} v{self.version} is not in {folder} (no RELEASE_v{self.version}.txt); "
                                 f"run `bench data download {self.name} --data-root {folder.parent}` or `bench data check`")
            import wilds

            _patch_wilds_group_means()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    self._wilds = wilds.get_dataset(dataset=self.wilds_name, version=self.version,
                                                    root_dir=str(folder.parent), download=False)
            except (KeyError, AssertionError, ValueError, TypeError, FileNotFoundError) as exc:
                raise MalformedData(f"{self.wilds_name} metadata in {folder} is malformed ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); re-download it")
        return self._wilds

    def split_indices(self, name: str) -> torch.Tensor:
        ds = self.wilds_dataset()
        return torch.from_numpy((ds.split_array == ds.split_dict[SPLITS[name]]).nonzero()[0])

    @abstractmethod
    def image_path(self, index: int) -> Path:
        """Where the image of dataset row `index` lives."""

    def load_split(self, name: str):
        if name not in SPLITS:
            raise BenchError(f"{self.name} has no split {name!r}; splits: {', '.join(SPLITS)}")
        ds = self.wilds_dataset()
        idx = self.split_indices(name)
        if len(idx) == 0:
            raise MalformedData(f"{self.name} split {name!r} ({SPLITS[name]}) is empty in {self.folder}; the metadata is incomplete")
        split = FileSplit([self.image_path(int(i)) for i in idx], ds.y_array[idx],
                          clip_transform(self.model_info, train=name == "train"))
        split.metadata = ds.metadata_array[idx]
        return split

    def metrics(self, split: str, logits: torch.Tensor, labels: torch.Tensor, metadata=None) -> dict[str, float]:
        """WILDS' own evaluator, and a check that bench's implementation of the ranked metric (the one the
        leaderboard's bootstrap recomputes from the stored predictions) gives the same value on these predictions."""
        metadata = self.split(split).metadata if metadata is None else metadata
        with warnings.catch_warnings():  # wilds warns about empty year groups in small splits; harmless
            warnings.simplefilter("ignore", UserWarning)
            results, _ = self.wilds_dataset().eval(logits.argmax(1), labels, metadata)
        out = {key: float(value) * 100.0 if "count" not in key else float(value) for key, value in results.items()}
        metric = self.protocol.metric
        ours = shared_metrics.point(metric, labels.numpy(), logits.argmax(1).numpy(), self.groups(split, metadata))
        if abs(ours - out[metric]) > shared_metrics.AGREEMENT:
            raise RuntimeError(f"bench's {metric} ({ours:.6f}) differs from WILDS' ({out[metric]:.6f}) on {split}")
        out["ece"] = shared_metrics.expected_calibration_error(logits, labels)
        return out


    download_size = ""
    metadata_files: tuple[str, ...] = ()

    def data_folders(self) -> list[Path]:
        return [self.folder] if self.folder.is_dir() else []

    def check_files(self) -> list[str]:
        folder = self.folder
        releases = sorted(p.name for p in folder.glob("RELEASE_v*.txt")) if folder.is_dir() else []
        if f"RELEASE_v{self.version}.txt" not in releases:
            found = f"found {', '.join(releases)}" if releases else "no release file found"
            raise MissingData(f"{self.wilds_name} v{self.version} is not in {folder} ({found}); run "
                              f"`bench data download {self.name} --data-root {folder.parent}` ({self.download_size})")
        for name in self.metadata_files:
            if not (folder / name).is_file():
                raise MissingData(f"{folder / name} is missing; it comes with the release: re-download {self.name}")
        self.wilds_dataset()  # parses the metadata
        return [f"found WILDS {self.wilds_name} v{self.version} ({', '.join(releases)})"]


def english_names() -> dict[int, tuple[int, str]]:
    """y -> (category_id, English name) for iWildCam v2.0's 182 classes."""
    import json

    table = json.loads((Path(__file__).parent / "tables" / "iwildcam_english_names.json").read_text())
    return {row["y"]: (row["category_id"], row["english"]) for row in table["classes"]}


@register_dataset("iwildcam")
class IWildCam(WildsAdapter):
    description = "WILDS iWildCam v2.0: camera-trap species, new camera locations as the shift (macro-F1)"
    wilds_name, version = "iwildcam", "2.0"
    templates = IWILDCAM_TEMPLATES
    protocol = IWILDCAM
    expected_sizes = {"train": 129809, "id_val": 7314, "id_test": 8154, "ood_val": 14961, "ood_test": 42791}
    download_size = "11 GB download, 25 GB on disk"
    metadata_files = ("metadata.csv", "categories.csv")

    classname_source = ("lower-cased English common names by category_id (bench/datasets/tables/"
                        "iwildcam_english_names.json), as the official WiSE-FT and FLYP code; not categories.csv's Latin")

    @cached_property
    def classnames(self) -> tuple[str, ...]:
        """English common names (lower-cased) in label order, matched to the release's categories.csv by
        category_id, so a release whose labels differ from the table is caught instead of mislabelled."""
        import pandas as pd

        path = self.folder / "categories.csv"
        if not path.is_file():
            raise MissingData(f"{path} is missing: iWildCam's class list comes from it; re-download the dataset")
        table = pd.read_csv(path)
        if not {"y", "category_id"} <= set(table.columns):
            raise MalformedData(f"{path} lacks the columns y and category_id; re-download the dataset")
        release = dict(zip(table["y"].astype(int), table["category_id"].astype(int)))
        english = english_names()
        n = int(self.wilds_dataset().n_classes)
        missing = [y for y in range(n) if y not in release]
        if missing:
            raise MalformedData(f"{path} has no row for classes {missing[:5]}; re-download the dataset")
        wrong = [y for y in range(n) if english.get(y, (None,))[0] != release[y]]
        if wrong:
            y = wrong[0]
            raise MalformedData(f"{path} maps class {y} to category_id {release[y]}, but iWildCam v2.0 has "
                             f"{english.get(y, ('none',))[0]}; this is not the v2.0 release: re-download it")
        return tuple(english[y][1].lower() for y in range(n))

    def image_path(self, index: int) -> Path:
        return self.folder / "train" / self.wilds_dataset()._input_array[index]


@register_dataset("fmow")
class FMoW(WildsAdapter):
    description = "WILDS FMoW v1.1: satellite land use, later years and regions as the shift (worst-region acc.)"
    wilds_name, version = "fmow", "1.1"
    templates = FMOW_TEMPLATES
    protocol = FMOW
    expected_sizes = {"train": 76863, "id_val": 11483, "id_test": 11327, "ood_val": 19915, "ood_test": 22108}
    download_size = "about 50 GB"
    metadata_files = ("rgb_metadata.csv", "country_code_mapping.csv")
    classname_source = ("WILDS' FMoW category names as they are ('_' kept, as WiSE-FT's and FLYP's prompts; the two "
                        "article templates space them, as WiSE-FT's append_proper_article)")

    @property
    def classnames(self) -> tuple[str, ...]:
        from wilds.datasets.fmow_dataset import categories

        return tuple(categories)

    def image_path(self, index: int) -> Path:
        return self.folder / "images" / f"rgb_img_{self.wilds_dataset().full_idxs[index]}.png"

    def groups(self, split: str, metadata=None):
        """Region per example, as WILDS' region grouper numbers them; region 'Other' (which WILDS' worst region
        leaves out) is -1."""
        import numpy as np

        ds = self.wilds_dataset()
        metadata = self.split(split).metadata if metadata is None else metadata
        region = np.asarray(metadata[:, ds.metadata_fields.index("region")]).astype(np.int32)
        other = [i for i, name in enumerate(ds.metadata_map["region"]) if "Other" in str(name)]
        return np.where(np.isin(region, other), -1, region)
