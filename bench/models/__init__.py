"""CLIP models from open_clip: any open_clip architecture and pretrained tag, plus the project's own configs.

Architectures are data (JSON files in `configs/`, registered with open_clip); the testbed's weights ship in
`bench/assets/` with their sha256. Every loaded model is described by a `ModelInfo` that goes into each record.
"""
from __future__ import annotations

import hashlib
import logging
import os
import socket
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.registry import suggest

CONFIG_DIR = Path(__file__).parent / "configs"
ASSET_DIR = Path(__file__).parent.parent / "assets"
# (architecture, tag) -> weights shipped with the project; never downloaded.
SHIPPED_WEIGHTS = {("bench-tinyclip", "tinyshift"): ASSET_DIR / "tinyclip-tinyshift.safetensors"}
_registered = False


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    pretrained: str | None
    activation: str  # "quick_gelu" (OpenAI weights) or "gelu"
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights_sha256: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def open_clip_module():
    global _registered
    import open_clip

    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True
    return open_clip


def list_architectures() -> list[str]:
    return open_clip_module().list_models()


def list_tags(arch: str) -> list[str]:
    oc = open_clip_module()
    tags = list(oc.list_pretrained_tags_by_model(arch))
    tags += [tag for (a, tag) in SHIPPED_WEIGHTS if a == arch]
    return sorted(set(tags))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def activation_of(model: torch.nn.Module) -> str:
    from open_clip.transformer import QuickGELU

    return "quick_gelu" if any(isinstance(m, QuickGELU) for m in model.modules()) else "gelu"


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _random_init(oc, arch: str) -> torch.nn.Module:
    """open_clip warns when no weights are loaded; here that is intended (weights follow, or the user asked)."""
    logging.disable(logging.WARNING)
    try:
        return oc.create_model(arch, pretrained=None)
    finally:
        logging.disable(logging.NOTSET)


def _load_shipped(oc, arch: str, path: Path) -> tuple[torch.nn.Module, str]:
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    model = _random_init(oc, arch)
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            state = {key: handle.get_tensor(key).float() for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise BenchError(f"weights file {path} is unreadable ({exc}); restore it with `git checkout -- {path}`")
    for key in ("arch", "activation"):
        want = arch if key == "arch" else activation_of(model)
        if meta.get(key) != want:
            raise BenchError(f"weights file {path} was saved for {key}={meta.get(key)!r}, not {want!r}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BenchError(f"weights file {path} does not match {arch}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model, sha256_file(path)


def load_clip(arch: str, pretrained: str | None) -> tuple[torch.nn.Module, ModelInfo]:
    """Create an open_clip CLIP model with weights; every failure is a one-line BenchError."""
    oc = open_clip_module()
    archs = oc.list_models()
    if arch not in archs:
        raise BenchError(f"unknown model {arch!r}{suggest(arch, archs)}; `bench list models` shows all")
    sha = None
    if pretrained and (arch, pretrained) in SHIPPED_WEIGHTS:
        model, sha = _load_shipped(oc, arch, SHIPPED_WEIGHTS[(arch, pretrained)])
    elif pretrained and (os.sep in pretrained or Path(pretrained).suffix in (".pt", ".bin", ".safetensors")):
        path = Path(pretrained)
        if not path.is_file():
            raise BenchError(f"weights file {path} does not exist; pass an existing file or a tag from `bench list models`")
        try:
            model = oc.create_model(arch, pretrained=str(path))
        except Exception as exc:  # open_clip raises many types for bad files; their texts end in codes and reprs
            raise BenchError(f"could not load weights {path} into {arch} ({type(exc).__name__}): it is not a "
                             f"checkpoint of that architecture; pass a .pt/.bin/.safetensors file saved for {arch}")
        sha = sha256_file(path)
    elif pretrained:
        tags = list_tags(arch)
        if pretrained not in tags:
            raise BenchError(f"model {arch} has no pretrained tag {pretrained!r}{suggest(pretrained, tags)}; tags: {', '.join(tags) or 'none'}")
        model = _load_hub(oc, arch, pretrained)
    else:
        model = _random_init(oc, arch)
    cfg = model.visual.preprocess_cfg
    size = cfg["size"]
    info = ModelInfo(
        arch=arch,
        pretrained=pretrained,
        activation=activation_of(model),
        image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        weights_sha256=sha,
    )
    return model.float().eval(), info


@contextmanager
def _hub_offline():
    """Local files only, quietly. huggingface_hub reads HF_HUB_OFFLINE once, when it is imported (open_clip imports
    it), so setting the variable later changes nothing: its module constant is switched too."""
    import huggingface_hub.constants as hub

    previous_env, previous = os.environ.get("HF_HUB_OFFLINE"), hub.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], hub.HF_HUB_OFFLINE = "1", True
    logging.disable(logging.CRITICAL)  # no "ERROR:root:" lines from a cache miss
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        hub.HF_HUB_OFFLINE = previous
        if previous_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous_env


def _load_hub(oc, arch: str, tag: str) -> torch.nn.Module:
    # First the local cache only, so that an offline machine answers at once instead of retrying for ~50 s.
    try:
        with _hub_offline():
            return oc.create_model(arch, pretrained=tag)
    except Exception:
        pass
    if not _hub_reachable():
        raise BenchError(
            f"weights {arch}/{tag} are not in the local cache and the model hub cannot be reached; "
            "run once with network access to cache them, or pass --pretrained /path/to/weights.pt"
        )
    try:
        return oc.create_model(arch, pretrained=tag)
    except Exception as exc:
        raise BenchError(f"could not download weights {arch}/{tag}: {str(exc).splitlines()[0][:200]}")
