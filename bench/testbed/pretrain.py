"""Reproduce the testbed's pretrained CLIP (`bench-tinyclip`, tag `tinyshift`) from a seed.

    python -m bench.testbed.pretrain --seed 0 --out bench/assets/tinyclip-tinyshift.safetensors

Contrastive image-caption pretraining (open_clip's ClipLoss) on the digits reserved for pretraining, drawn in all
seven styles with fresh jitter every step, captioned "a {style} of the number {name}." in several phrasings and
sometimes without the style. Benchmark images are never seen. The number of steps is the knob that keeps
zero-shot accuracy below ceiling, so fine-tuning has something to gain.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from bench.testbed import data
from bench.testbed.render import DIGIT_NAMES, STYLES, STYLE_WORDS, load_digits, render
from bench.models import activation_of, open_clip_module, sha256_file

ARCH = "bench-tinyclip"
CAPTIONS = (
    "a {style} of the number {name}.",
    "a {style} showing the digit {name}.",
    "the number {name} drawn as a {style}.",
    "a {style} of a {name}.",
)
PLAIN_CAPTIONS = ("the number {name}.", "a picture of the digit {name}.", "the digit {name}.")


def caption(rng: random.Random, label: int, style: str, plain_prob: float) -> str:
    if rng.random() < plain_prob:
        return rng.choice(PLAIN_CAPTIONS).format(name=DIGIT_NAMES[label])
    return rng.choice(CAPTIONS).format(style=STYLE_WORDS[style], name=DIGIT_NAMES[label])


def zero_shot_report(model, tokenizer, mean, std) -> dict[str, float]:
    oc = open_clip_module()
    model.eval()
    with torch.no_grad():
        head = oc.build_zero_shot_classifier(model, tokenizer, DIGIT_NAMES, data.TEMPLATES, device="cpu")
        out = {}
        for split in data.SPLITS:
            images, labels = data.render_split(split)
            images = (images - mean) / std
            feats = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
            out[split] = round(float(((feats @ head).argmax(1) == labels).float().mean()) * 100, 2)
    model.train()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--plain-prob", type=float, default=0.2)
    parser.add_argument("--report-every", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("bench/assets/tinyclip-tinyshift.safetensors"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    oc = open_clip_module()
    model = oc.create_model(ARCH, pretrained=None)
    tokenizer = oc.get_tokenizer(ARCH)
    cfg = model.visual.preprocess_cfg
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    images8, labels = load_digits()
    pool = torch.from_numpy(data.partition()["pretrain"])
    images8, labels = torch.from_numpy(images8), torch.from_numpy(labels)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    lr_at = lambda s: args.lr * (s + 1) / args.warmup if s < args.warmup else \
        0.5 * args.lr * (1 + math.cos(math.pi * (s - args.warmup) / max(1, args.steps - args.warmup)))
    loss_fn = oc.ClipLoss()
    history, start = [], time.time()
    model.train()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = pool[torch.randint(len(pool), (args.batch_size,), generator=gen)]
        styles = [STYLES[int(i)] for i in torch.randint(len(STYLES), (args.batch_size,), generator=gen)]
        images = (render(images8[idx], styles, gen) - mean) / std
        texts = tokenizer([caption(rng, int(labels[i]), s, args.plain_prob) for i, s in zip(idx, styles)])
        image_f, text_f, scale = model(images, texts)[:3]
        loss = loss_fn(image_f, text_f, scale)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if (step + 1) % args.report_every == 0 or step + 1 == args.steps:
            report = zero_shot_report(model, tokenizer, mean, std)
            history.append({"step": step + 1, "loss": round(loss.item(), 4), "zero_shot_acc": report,
                            "seconds": round(time.time() - start, 1)})
            print(json.dumps(history[-1]), flush=True)

    from safetensors.torch import save_file

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {"arch": ARCH, "activation": activation_of(model), "seed": str(args.seed), "steps": str(args.steps),
            "torch": torch.__version__}
    tmp = args.out.with_suffix(".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(args.out)
    sha = sha256_file(args.out)
    args.out.with_suffix(".sha256").write_text(f"{sha}  {args.out.name}\n")
    card = {"arch": ARCH, "tag": "tinyshift", "sha256": sha, "args": {k: str(v) for k, v in vars(args).items()},
            "torch": torch.__version__, "history": history}
    args.out.with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"saved {args.out} sha256={sha} in {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
