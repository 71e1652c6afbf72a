"""The papers' WILDS protocols (FLYP / AutoFT settings on CLIP ViT-B/16 with OpenAI weights, 224 px).

Steps are the references' 20 epochs at batch 256 with the last partial batch dropped (iWildCam 129,809 training
images: 507 steps per epoch; FMoW 76,863: 300), one ID-val evaluation per epoch, warm-up 500, clipping 1.0 (the
AutoFT setting; FLYP itself does not clip and keeps doing so here), lr 1e-5, wd 0.2 (FLYP's README). `--reduced` is
a documented quick budget (2 epochs) whose runs are marked unofficial.
"""
from bench.protocols.base import Protocol

_COMMON = dict(model="ViT-B-16", pretrained="openai", train_split="train", id_val_split="id_val",
               id_test_split="id_test", ood_val_split="ood_val", ood_test_splits=("ood_test",), batch_size=256,
               warmup=500, grad_clip=1.0, eval_batch_size=512, lr=1e-5, weight_decay=0.2, ood_val_size=1000,
               report_ood_val=True)  # WILDS submissions include predictions on its val split

IWILDCAM = Protocol(
    name="wilds-iwildcam", version=1, dataset="iwildcam",
    description="WILDS iWildCam v2.0: train on 243 camera locations, test on new ones",
    metric="F1-macro_all", metric_label="macro-F1 over the classes present in the split (%), WILDS evaluator",
    steps=20 * 507, eval_every=507, reduced=(("steps", 2 * 507), ("warmup", 50)), **_COMMON)

FMOW = Protocol(
    name="wilds-fmow", version=1, dataset="fmow",
    description="WILDS FMoW v1.1: train before 2013, test 2016-2017 (worst region)",
    metric="acc_worst_region", metric_label="worst-region accuracy (%), region 'Other' excluded, WILDS evaluator",
    steps=20 * 300, eval_every=300, reduced=(("steps", 2 * 300), ("warmup", 50)), **_COMMON)
