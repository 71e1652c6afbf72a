"""Dataset adapters, registered by name. Built-ins are lazy "module:Class" entries, imported on first use."""
from bench.datasets.base import DatasetAdapter
from bench.registry import Registry

DATASETS: Registry[DatasetAdapter] = Registry("dataset", DatasetAdapter, entry_point_group="bench.datasets")
DATASETS.add("tinyshift", "bench.datasets.tinyshift:TinyShift")
DATASETS.add("iwildcam", "bench.datasets.wilds_data:IWildCam")
DATASETS.add("fmow", "bench.datasets.wilds_data:FMoW")
DATASETS.add("domainnet", "bench.datasets.domainnet:DomainNet")
DATASETS.add("imagenet", "bench.datasets.imagenet:ImageNet")


def register_dataset(name: str):
    return DATASETS.register(name)
