"""Dataset adapters, registered by name. Built-ins are lazy "module:Class" entries, imported on first use."""
from bench.datasets.base import DatasetAdapter
from bench.registry import Registry

DATASETS: Registry[DatasetAdapter] = Registry("dataset", DatasetAdapter, entry_point_group="bench.datasets")
DATASETS.add("tinyshift", "bench.datasets.tinyshift:TinyShift")
DATASETS.add("iwildcam", "bench.datasets.wilds_data:IWildCam")
DATASETS.add("fmow", "bench.datasets.wilds_data:FMoW")
DATASETS.add("domainnet", "bench.datasets.domainnet:DomainNet")
for _name in ("imagenet",):
    DATASETS.plan(_name, "the real benchmarks land with issue #4; use --dataset tinyshift meanwhile")


def register_dataset(name: str):
    return DATASETS.register(name)
