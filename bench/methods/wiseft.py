"""WiSE-FT: fine-tune as FT, then interpolate every tensor (head included) between the zero-shot and the
fine-tuned model, theta_a = (1 - a) theta_0 + a theta_ft, for a in {0, 0.1, ..., 1}, all from one run.
The reported row is a = 0.5, the paper's fixed choice, which needs no OOD data (a is never chosen on OOD test).
Deviation: theta_ft is the best ID-val checkpoint (the protocol's selection, as for every method); the official
code interpolates with the last epoch's weights."""
from bench.methods import register_method
from bench.methods.base import ALPHA_GRID
from bench.methods.ft import FineTune


@register_method("wiseft")
class WiSEFT(FineTune):
    description = "WiSE-FT: weight interpolation between zero-shot and FT, alpha grid 0..1, alpha=0.5 reported"
    ensemble_alphas = ALPHA_GRID
    reported_alpha = 0.5
