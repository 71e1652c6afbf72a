"""bench: a benchmark suite for robust fine-tuning of CLIP models under distribution shift."""
__version__ = "0.1.0"
