"""Dataset adapters, registered by name with `@register_dataset("name")`; the files of this package are discovered
by reading them and imported on first use (a new built-in dataset is one new file)."""
from bench.datasets.base import DatasetAdapter
from bench.registry import Registry

DATASETS: Registry[DatasetAdapter] = Registry("dataset", DatasetAdapter, entry_point_group="bench.datasets")
BUILTIN_DATASETS = tuple(DATASETS.discover("bench.datasets", "register_dataset"))


def register_dataset(name: str):
    return DATASETS.register(name)
