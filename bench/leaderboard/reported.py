"""Numbers reported by the official repositories, shown beside our measured rows as "reported" with their source.

Only values read in an official repository file at a named commit are listed (shared/reference/reported-numbers.md
checked each one); numbers recalled from memory or paper tables not seen never are. A row is shown in the section
of the same dataset, protocol and model, and only in the columns whose metric is the section's own (a reported
value under another metric, e.g. FMoW's average ID accuracy against our worst-region metric, is left out and
said in the row's note). They are never mixed into our means.
"""
from __future__ import annotations

from dataclasses import dataclass

TPGM = "PotatoTian/TPGM @ 9124c3c, ImageNet_ViT_Exp/README.md (Expected Results)"
LIPSUM = "cs-giung/lipsum-ft @ 1331873, README.md (console output, seed 0)"
DRM = "vaynexie/DRM @ 681f236, readme.md (Inference table)"
SOUPS = "mlfoundations/model-soups @ d5398f1"
IMAGENET_OOD = ("imagenet-v2", "imagenet-r", "imagenet-a", "imagenet-sketch", "objectnet")


@dataclass(frozen=True)
class Reported:
    protocol: str  # protocol id whose splits and metric the numbers use
    arch: str
    pretrained: str
    method: str
    id_metric: float | None  # None: not reported under the section's metric
    ood_metrics: tuple[tuple[str, float], ...]  # (split, value)
    source: str
    note: str = ""


def _imagenet(method, values, source, note="", arch="ViT-B-16"):
    *ood, = values[1:]
    return Reported("imagenet-shifts@1", arch, "openai", method, values[0],
                    tuple((s, v) for s, v in zip(IMAGENET_OOD, ood) if v is not None), source, note)


REPORTED: tuple[Reported, ...] = (
    _imagenet("zero-shot (TPGM)", (67.82, 61.19, 75.73, 50.97, 45.57, None), TPGM),
    _imagenet("FT (TPGM)", (84.27, 74.78, 65.05, 45.54, 48.28, None), TPGM, "16-GPU DDP, batch 32 x 16"),
    _imagenet("WiSE-FT α=0.5 (TPGM)", (82.16, 73.66, 78.25, 56.63, 54.16, None), TPGM),
    _imagenet("TPGM", (83.80, 75.27, 76.87, 55.91, 54.50, None), TPGM),
    _imagenet("zero-shot (Lipsum-FT)", (68.17, 61.98, 76.35, 52.00, 46.66, None), LIPSUM, "80 templates"),
    _imagenet("Lipsum-FT", (83.32, 73.56, 75.86, 49.87, 51.48, None), LIPSUM, "one seed"),
    _imagenet("DRM", (82.05, 73.43, 77.82, 53.53, 52.48, None), DRM, "extra LLM-written concept descriptions"),
    _imagenet("greedy soup", (81.03, 69.55, 64.20, 27.89, 47.77, 44.90),
              f"{SOUPS}, greedy_soup_results.jsonl line 1", "selection on a held-out 2 % of ImageNet train",
              arch="ViT-B-32"),
    _imagenet("uniform soup (72 models)", (79.97, 68.51, 66.54, 29.17, 47.71, 45.95),
              f"{SOUPS}, uniform_soup_results.jsonl line 1", arch="ViT-B-32"),
    _imagenet("best single model of the soup sweep", (80.39, 68.44, 60.63, 23.64, 44.51, 42.62),
              f"{SOUPS}, individual_model_results.jsonl line 44", arch="ViT-B-32"),
    Reported("domainnet@1", "ViT-B-16", "openai", "zero-shot (Lipsum-FT)", 82.46,
             (("painting", 66.69), ("clipart", 65.57), ("infograph", 43.77)), LIPSUM,
             "80 templates; sketch cut off in the log line"),
    Reported("domainnet@1", "ViT-B-16", "openai", "Lipsum-FT", 88.90,
             (("sketch", 56.57), ("painting", 66.38), ("clipart", 68.08), ("infograph", 46.29)), LIPSUM, "one seed"),
    Reported("wilds-iwildcam@1", "ViT-B-16", "openai", "DRM", 53.53, (("ood_test", 40.49),), DRM),
    Reported("wilds-fmow@1", "ViT-B-16", "openai", "DRM", None, (("ood_test", 45.66),), DRM,
             "ID reported as average accuracy (68.57), not worst-region: left out"),
)


def reported_for(protocol_id: str, arch: str, pretrained) -> list[Reported]:
    return [r for r in REPORTED if (r.protocol, r.arch, r.pretrained) == (protocol_id, arch, str(pretrained))]
