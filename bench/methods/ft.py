"""FT: end-to-end fine-tuning of the image tower and a zero-shot-initialised head with cross-entropy
(the WiSE-FT recipe: AdamW, warm-up + cosine, gradient clipping; the text tower is not used)."""
from bench.methods import register_method
from bench.methods.base import Method


@register_method("ft")
class FineTune(Method):
    description = "full fine-tuning: image tower + zero-shot-initialised head, cross-entropy"
    leaderboard_reference = True  # every other row is measured against FT's (declared on this class only)
    step_cost_as = "ft"  # WiSE-FT's step (a subclass) is this one
    trend_baseline = True
