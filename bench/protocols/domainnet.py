"""DomainNet protocol (ours, in the WiSE-FT recipe: the FTP paper's CLIP runs are ResNet-50 with SGD, which the
ViT-B/16 benchmark does not use): ViT-B/16 OpenAI, 224 px, batch 256, 10 epochs of real_train (about 120k
images: 472 steps per epoch), lr 1e-5, wd 0.1, warm-up 500, clipping 1.0, metric top-1 accuracy."""
from bench.protocols.base import Protocol

DOMAINNET = Protocol(
    name="domainnet", version=1, dataset="domainnet",
    description="DomainNet: real -> sketch, painting, clipart, infograph",
    model="ViT-B-16", pretrained="openai", train_split="train", id_val_split="id_val", id_test_split="id_test",
    ood_val_split="ood_val", ood_test_splits=("sketch", "painting", "clipart", "infograph"),
    metric="acc", metric_label="top-1 accuracy (%)", steps=10 * 472, batch_size=256, warmup=500, grad_clip=1.0,
    eval_every=472, eval_batch_size=512, lr=1e-5, weight_decay=0.1, reduced=(("steps", 472), ("warmup", 50)))
