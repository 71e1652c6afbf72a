"""ImageNet protocol (WiSE-FT's FT recipe, also used by FLYP/AutoFT for ViT-B/16): batch 512, 10 epochs, lr 3e-5,
wd 0.1, warm-up 500, clipping 1.0, the 80 OpenAI templates. ID val = 10 held-out training images per class (the
references select on ImageNet val, which is also their ID test; a protocol must not). 1,281,167 - 10,000 training
images at batch 512: 2,482 steps per epoch. OOD avg = mean of V2, R, A, Sketch, ObjectNet; ImageNet-C severity 5
(15 corruptions) is the OOD validation set for searching methods; AutoFT scores each trial on 15,000 of its
images, as the official ImageNet script (`--num_ood_hp_examples 15000`; the WILDS protocols use 1,000). That size
is part of the hash of every run that reads OOD val, so the protocol's version is unchanged (no other run moves)."""
from bench.protocols.base import Protocol

IMAGENET = Protocol(
    name="imagenet-shifts", version=1, dataset="imagenet",
    description="ImageNet -> V2, R, A, Sketch, ObjectNet",
    model="ViT-B-16", pretrained="openai", train_split="train", id_val_split="id_val", id_test_split="id_test",
    ood_val_split="ood_val", ood_test_splits=("imagenet-v2", "imagenet-r", "imagenet-a", "imagenet-sketch", "objectnet"),
    metric="acc", metric_label="top-1 accuracy (%); R and A over their 200 classes, ObjectNet over its 113 overlapping classes",
    steps=10 * 2482, batch_size=512, warmup=500, grad_clip=1.0, eval_every=2482, eval_batch_size=512, lr=3e-5,
    weight_decay=0.1, ood_val_size=15_000, reduced=(("steps", 2482), ("warmup", 100)))
