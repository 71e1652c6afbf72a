"""LP: logistic regression on frozen image features (Kumar et al.'s recipe, AnanyaKumar/transfer_learning @ 13c3e2b
`log_reg_sk.py`): the features are the image tower's raw output (CLIP's `encode_image`, **not** L2-normalised, as
officially), standardised by one overall mean and standard deviation of the training features (scalars, not per
feature), then scikit-learn's L-BFGS LogisticRegression is warm-started along a sweep of the inverse
regularisation C over log-spaced values from 1e-7 to 1e2 (50 values: the released driver
`scripts/run_adaptation_experiments.py` passes num_reg_values=50; the script's own default is 100), max_iter 200,
C chosen by ID-validation accuracy only. The weights are mapped back to the unstandardised features
(w / s, b - w . (m / s)) and become the classifier's head on the raw features, so LP-FT starts from them and
fine-tunes with the head reading raw features too. Features come from the pretrained tower without augmentation
(the evaluation preprocessing, also for the training split), as officially."""
from __future__ import annotations

import warnings

import numpy as np
import torch

from bench.config import POSITIVE, HParam, Range, short_value
from bench.methods import register_method
from bench.methods.base import Method
from bench.models.classifier import linear_head


def fit_linear_probe(train_x, train_y, val_x, val_y, num_classes: int, c_grid, max_iter: int = 200):
    """Sweep C (warm-started), keep the fit with the best ID-val accuracy (earliest on ties).

    Features are standardised by the training features' overall mean and std first (Kumar et al.), and the
    returned weights act on the raw features. Returns (weight (K, D), bias (K,), chosen C, list of (C, val acc %))."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    mean, std = float(np.mean(train_x)), float(np.std(train_x))
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    clf = LogisticRegression(max_iter=max_iter, warm_start=True)
    best, curve = None, []
    for c in c_grid:
        clf.set_params(C=float(c))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(train_x, train_y)
        acc = float((clf.predict(val_x) == val_y).mean()) * 100.0
        curve.append((float(c), acc))
        if best is None or acc > best[0]:
            best = (acc, float(c), clf.coef_.copy(), clf.intercept_.copy(), clf.classes_.copy())
    _, c, coef, intercept, classes = best
    coef, intercept = coef / std, intercept - coef.sum(axis=1) * (mean / std)  # back to the raw features
    if coef.shape[0] == 1:  # binary problems: sklearn keeps one row
        coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
    weight = np.zeros((num_classes, coef.shape[1]), dtype=np.float32)
    bias = np.zeros(num_classes, dtype=np.float32)
    weight[classes], bias[classes] = coef, intercept  # classes absent from train keep a zero row, as officially
    return torch.from_numpy(weight), torch.from_numpy(bias), c, curve


class ProbeMixin:
    """Shared by LP and LP-FT: replace the head by a logistic-regression probe fitted on frozen features."""

    probe_hparams = {
        "c_min": HParam(1e-7, "smallest inverse regularisation C in the sweep", valid=POSITIVE),
        "c_max": HParam(1e2, "largest C in the sweep", valid=POSITIVE),
        "c_steps": HParam(50, "number of log-spaced C values (the official driver's 50)", valid=Range(1, 10_000)),
        "lp_max_iter": HParam(200, "L-BFGS iterations per C (warm-started)", valid=Range(1, 100_000)),
    }

    @classmethod
    def planned_work(cls, hp, protocol, sizes):  # frozen features of train and ID val, once (the probe: CPU)
        return {**super().planned_work(hp, protocol, sizes),
                "forward_images": sizes[protocol.train_split] + sizes[protocol.id_val_split]}

    @classmethod
    def check_hparams(cls, hp: dict) -> None:
        if hp["c_max"] < hp["c_min"]:
            from bench.errors import BenchError

            raise BenchError(f"--set c_max={hp['c_max']:g} is below c_min={hp['c_min']:g}; the C sweep runs from c_min "
                             "up to c_max")

    def fit_probe(self, model):
        hp = self.hp
        train_x, train_y = self.ctx.frozen_features("train", normalized=False)
        val_x, val_y = self.ctx.frozen_features("id_val", normalized=False)
        grid = np.logspace(np.log10(hp["c_min"]), np.log10(hp["c_max"]), int(hp["c_steps"]))
        weight, bias, c, curve = fit_linear_probe(train_x.numpy(), train_y.numpy(), val_x.numpy(), val_y.numpy(),
                                                  len(self.ctx.classnames), grid, int(hp["lp_max_iter"]))
        model.head = linear_head(weight, bias)
        model.normalize = False  # the probe reads the raw embedding
        self.probe_info = {"C": c, "id_val_acc_at_C": max(acc for _, acc in curve), "c_sweep": curve}
        return model

    def info(self) -> dict:
        return {"linear_probe": getattr(self, "probe_info", None)}

    @classmethod
    def selected(cls, method_info: dict) -> str | None:
        probe = method_info.get("linear_probe")
        return f"C chosen on ID val: {short_value(probe['C'])}" if probe else None


@register_method("lp")
class LinearProbe(ProbeMixin, Method):
    description = "linear probe: logistic regression on frozen features, C swept on ID val"
    trend_baseline = True  # FT and LP: the standard ID-trained baselines of the trend
    hparams = dict(ProbeMixin.probe_hparams)
    trains = False
    frozen_image_tower = True

    def build(self):
        return self.fit_probe(super().build())
