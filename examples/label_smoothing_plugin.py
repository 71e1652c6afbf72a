"""A complete third-party method: fine-tuning with label smoothing, in one class.

    bench run --plugin examples/label_smoothing_plugin.py --method ls-ft --set smoothing=0.2
"""
import torch.nn.functional as F

from bench.config import HParam, Range
from bench.methods import Method, register_method


@register_method("ls-ft")
class LabelSmoothingFT(Method):
    description = "fine-tuning with label-smoothed cross-entropy (plugin example)"
    hparams = {**Method.hparams,
               "smoothing": HParam(0.1, "label smoothing mass", ("uniform", 0.0, 0.3), Range(0.0, 1.0, high_open=True))}

    def loss(self, model, images, labels):
        return F.cross_entropy(model(images), labels, label_smoothing=self.hp["smoothing"])
