"""`tinyshift`: the embedded offline testbed (real digits, procedurally rendered domains)."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from bench.datasets import register_dataset
from bench.testbed import data
from bench.datasets.base import DatasetAdapter, TensorSplit
from bench.errors import BenchError
from bench.protocols.tinyshift import TINYSHIFT


@register_dataset("tinyshift")
class TinyShift(DatasetAdapter):
    description = "embedded testbed: digits as photos (ID) vs sketch/painting/pixel/halftone/neon (OOD); offline"
    classnames = data.CLASSNAMES
    classname_source = "the digit words zero..nine (bench/testbed/render.py)"
    templates = data.TEMPLATES
    protocol = TINYSHIFT
    needs_data_root = False
    # Intra-op threads of every CPU run: summation order (and so every result bit) depends on the thread count,
    # so the committed testbed numbers reproduce on any machine with the same CPU kernels (2: what they ran with).
    cpu_threads = 2

    @contextmanager
    def gated(self, check):
        with super().gated(check), data.gated(check):
            yield self

    def check(self, deep: bool = False, progress=None) -> list:
        from bench.datasets.check import Finding

        return [Finding(self.name, ["all splits"], "embedded",
                        notes=["rendered in memory from scikit-learn's digits; nothing to download"])]

    def load_split(self, name: str) -> TensorSplit:
        if name not in data.SPLITS:
            raise BenchError(f"tinyshift has no split {name!r}; splits: {', '.join(data.SPLITS)}")
        images, labels = data.render_split(name, size=self.model_info.image_size)
        mean = torch.tensor(self.model_info.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.model_info.std).view(1, 3, 1, 1)
        return TensorSplit((images - mean) / std, labels)
