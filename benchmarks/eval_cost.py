"""Evaluation cost of one run per real protocol: images put through the model at the final evaluation.

    python benchmarks/eval_cost.py

Before (bench <= 0.3): every variant evaluated, `final` again beside alpha = 1, and the whole OOD-val split for
every method. Now: each distinct model once, OOD val only for a method that reads it (AutoFT) and only on the
protocol's subset of `ood_val_size` examples it can read. Split sizes: the adapters' `expected_sizes` (the
releases'), ObjectNet's 113-class subset as in the WiSE-FT/FLYP papers, DomainNet's from its published split lists
(approximate: bench does not check them). Prints a markdown table (the README's).
"""
from __future__ import annotations

from bench.datasets.imagenet import ImageNet
from bench.datasets.wilds_data import FMoW, IWildCam
from bench.methods import METHODS
from bench.protocols.domainnet import DOMAINNET
from bench.protocols.imagenet import IMAGENET
from bench.protocols.wilds import FMOW, IWILDCAM

EXTRA_SIZES = {
    "imagenet": {"objectnet": 18_574},
    "domainnet": {"id_val": 5 * 345, "id_test": 52_041, "ood_val": 120_750, "sketch": 20_916, "painting": 21_850,
                  "clipart": 14_604, "infograph": 15_582},
}
ADAPTERS = {"iwildcam": IWildCam, "fmow": FMoW, "imagenet": ImageNet}


def images(protocol, sizes: dict, method_cls, before: bool) -> int:
    variants = method_cls.variants({})
    reads = "ood_val" in method_cls.requires
    models = len(variants) if before else len({None if a in (None, 1.0) else a for a in variants.values()})
    ood_val = sizes["ood_val"] if before else (min(protocol.ood_val_size, sizes["ood_val"]) if reads else 0)
    per_model = sizes[protocol.id_val_split] + ood_val + sum(sizes[s] for s in protocol.test_splits)
    return models * per_model


def main() -> None:
    rows = ["| protocol | FT-like method (1 model) before → now | weight-ensembled method (WiSE-FT, FLYP, FTP, LoRA: "
            "12 variants) before → now | AutoFT before → now |", "|---|---|---|---|"]
    ft, wise, autoft = METHODS.get("ft"), METHODS.get("wiseft"), METHODS.get("autoft")
    for dataset, protocol in (("iwildcam", IWILDCAM), ("fmow", FMOW), ("imagenet", IMAGENET), ("domainnet", DOMAINNET)):
        sizes = {**getattr(ADAPTERS.get(dataset), "expected_sizes", {}), **EXTRA_SIZES.get(dataset, {})}
        cells = [f"{images(protocol, sizes, m, True):,} → {images(protocol, sizes, m, False):,}" for m in (ft, wise, autoft)]
        rows.append(f"| {protocol.id} | " + " | ".join(cells) + " |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
