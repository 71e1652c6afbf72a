"""The embedded testbed's protocol (v1). Budget sized so one run takes well under a minute on 2 CPU cores."""
from bench.protocols.base import Protocol

TINYSHIFT = Protocol(
    name="tinyshift",
    version=1,
    dataset="tinyshift",
    description="digits: fine-tune on photos, test on sketch/painting/pixel/halftone/neon renderings",
    model="bench-tinyclip",
    pretrained="tinyshift",
    train_split="train",
    id_val_split="id_val",
    id_test_split="id_test",
    ood_val_split="ood_val",
    ood_test_splits=("sketch", "painting", "pixel", "halftone", "neon"),  # the testbed's OOD test styles
    metric="acc",
    metric_label="top-1 accuracy (%)",
    steps=500,
    batch_size=64,
    warmup=20,
    grad_clip=1.0,
    eval_every=50,
    eval_batch_size=500,
    lr=1.5e-3,
    weight_decay=0.1,
    papers_report=False,  # the embedded testbed: no paper reports on it
)
