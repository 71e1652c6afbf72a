"""LP-FT (Kumar et al., 2022): fit a linear probe first (as `lp`), then fine-tune everything from it at a smaller
learning rate, so the early gradients distort the pretrained features less. Deviation: the FT stage uses the
protocol's AdamW schedule (as the FLYP/AutoFT comparisons do), not the SGD of Kumar et al.'s configs."""
from bench.config import POSITIVE, HParam
from bench.methods import register_method
from bench.methods.base import Method
from bench.methods.lp import ProbeMixin


@register_method("lpft")
class LPFT(ProbeMixin, Method):
    description = "LP-FT: logistic-regression head first, then full fine-tuning at a 10x smaller lr"
    step_cost_as = "ft"  # the FT stage's step; the probe's features are priced by ProbeMixin.planned_work
    hparams = {
        **Method.hparams,
        "lr": HParam(lambda p: p.lr * 0.1, "FT-stage learning rate (10x below FT's)", ("log", 1e-6, 1e-3), POSITIVE),
        **ProbeMixin.probe_hparams,
    }

    def build(self):
        return self.fit_probe(super().build())
