"""Zero-shot CLIP: the template head built from class-name prompts, no training."""
from bench.methods import register_method
from bench.methods.base import Method


@register_method("zeroshot")
class ZeroShot(Method):
    description = "zero-shot CLIP: class-prompt template head, no training"
    hparams = {}
    trains = False
    frozen_image_tower = True
