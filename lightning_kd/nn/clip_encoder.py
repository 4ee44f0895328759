"""open_clip image / text encoders, built strictly offline.

Weights come only from a LOCAL file (``pretrained=/path/to/open_clip_model.safetensors``, ``.bin`` or ``.pt`` as
open_clip saves them): the architecture is always built with ``pretrained=None`` and the file is then loaded with
:func:`open_clip.load_checkpoint`, so an open_clip pretrained *tag* (which would download) never reaches open_clip.
``random_init=True`` builds the architecture with seeded random weights, for tests and smoke runs.

:data:`TINY_CLIP` names a tiny registered config (32 x 32 ViT, 2 layers, width 32; 2-layer text tower with the
default BPE vocabulary, which ships inside the open_clip wheel) used by the tests.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lightning_kd.checkpoint import WeightsError

__all__ = [
    "PRETRAINED_OPTION", "TINY_CLIP", "TINY_CLIP_CONFIG", "CLIPWeightsError", "ImagePreprocess", "check_weights_args",
    "encode_images", "encode_texts", "load_open_clip", "open_clip_module", "register_tiny_clip",
]

#: the config option that takes the weights file (named in error messages)
PRETRAINED_OPTION = "data.init_args.pretrained"
#: name of the tiny registered test architecture
TINY_CLIP = "lkd-tiny-clip"
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "head_width": 16, "layers": 2, "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


class CLIPWeightsError(WeightsError):
    """A weights file that cannot be read, or whose tensors do not fit the requested architecture."""


@dataclass(frozen=True)
class ImagePreprocess:
    """What the image tower expects: ``size`` (H, W), per-channel ``mean`` / ``std`` of [0, 1] RGB, and the
    ``interpolation`` ("bicubic" or "bilinear") used to resize (shortest side to size, then centre crop)."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    @classmethod
    def from_model(cls, model: torch.nn.Module) -> ImagePreprocess:
        cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {}
        size = cfg.get("size", getattr(model.visual, "image_size", 224))
        size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

        interpolation = cfg.get("interpolation", "bicubic")
        return cls(size=size, mean=tuple(float(m) for m in cfg.get("mean", OPENAI_DATASET_MEAN)),
                   std=tuple(float(s) for s in cfg.get("std", OPENAI_DATASET_STD)),
                   interpolation=interpolation if interpolation in ("bicubic", "bilinear") else "bicubic")


def register_tiny_clip() -> None:
    """Register :data:`TINY_CLIP` with open_clip (idempotent, offline: no file is written)."""
    from open_clip import factory

    registry = getattr(factory, "_MODEL_CONFIGS", None)
    if isinstance(registry, dict):
        # add_model_config() only takes json files; its rescan keeps entries already in this dict
        registry[TINY_CLIP] = TINY_CLIP_CONFIG
    elif factory.get_model_config(TINY_CLIP) is None:  # pragma: no cover - other open_clip layouts
        import json
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="lkd-open-clip-"))
        (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
        factory.add_model_config(folder / f"{TINY_CLIP}.json")


def open_clip_module() -> Any:
    """``open_clip``, imported on first use (it is slow to import) with :data:`TINY_CLIP` registered."""
    import open_clip

    register_tiny_clip()
    return open_clip


def check_weights_args(model_name: str, pretrained: str | None, random_init: bool) -> Path | None:
    """Validate the weights options; the local weights file (``None`` with ``random_init``).

    Raises:
        ValueError: both ``pretrained`` and ``random_init`` are set, or ``model_name`` has a hub / dir schema.
        FileNotFoundError: no weights given, or the file does not exist.
    """
    if ":" in model_name:
        raise ValueError(f"model_name {model_name!r}: hub / local-dir schemas are not supported (they may download); "
                         f"use an open_clip architecture name such as 'ViT-B-32' and pass its weights file as "
                         f"{PRETRAINED_OPTION}")
    if random_init:
        if pretrained is not None:
            raise ValueError(f"both {PRETRAINED_OPTION}={pretrained!r} and random_init=true are set; set only one")
        return None
    if pretrained is None:
        raise FileNotFoundError(
            f"no CLIP weights for {model_name!r}: {PRETRAINED_OPTION} is not set (nothing is downloaded). Fix: on a "
            f"machine with internet, download open_clip's weights (e.g. ViT-B-32, a .safetensors file) and set "
            f"{PRETRAINED_OPTION}=/local/path/to/it; or set random_init: true for a smoke test with random weights.")
    path = Path(pretrained).expanduser()
    if not path.is_file():
        hint = "it is a directory" if path.is_dir() else "no such file"
        raise FileNotFoundError(
            f"{path}: CLIP weights file not found ({hint}); {PRETRAINED_OPTION} must be a local .safetensors / .bin / "
            f".pt file (open_clip pretrained tags such as 'openai' are not downloaded). Fix: set {PRETRAINED_OPTION} "
            f"to an existing weights file for {model_name!r}, or random_init: true for a smoke test.")
    return path


class _DropNoWeightsWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Hide open_clip's root-logger warning about random weights (we load the file ourselves right after)."""
    root = logging.getLogger()
    f = _DropNoWeightsWarning()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def load_open_clip(
    model_name: str,
    pretrained: str | None,
    random_init: bool = False,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[torch.nn.Module, ImagePreprocess, Any]:
    """Build an open_clip model offline; returns ``(model in eval mode without grads, preprocessing, tokenizer)``.

    Args:
        model_name: a registered open_clip architecture (``open_clip.list_models()``, or :data:`TINY_CLIP`).
        pretrained: LOCAL weights file (never a tag); required unless ``random_init``.
        random_init: random weights, seeded with ``seed`` (the global RNG is left untouched).
        device: where the model is put.
        seed: seed of the random weights.

    Raises:
        FileNotFoundError: no weights given / missing file (the message names :data:`PRETRAINED_OPTION` and a fix).
        CLIPWeightsError: unreadable file, or its tensors do not match ``model_name``.
        ValueError: unknown ``model_name``, or both ``pretrained`` and ``random_init``.
    """
    path = check_weights_args(model_name, pretrained, random_init)
    oc = open_clip_module()
    if oc.get_model_config(model_name) is None:
        raise ValueError(f"unknown open_clip model_name {model_name!r}; known: e.g. 'ViT-B-32', 'ViT-B-16', "
                         f"'ViT-L-14', 'RN50' (open_clip.list_models()), or {TINY_CLIP!r} for tests")
    with _quiet_open_clip(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = oc.create_model(model_name, pretrained=None, pretrained_image=False, pretrained_text=False,
                                device="cpu")
    if path is not None:
        try:
            oc.load_checkpoint(model, str(path), strict=True, weights_only=True)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - unreadable files and key / shape mismatches raise many types
            raise CLIPWeightsError(
                f"{path}: cannot load these weights into open_clip model {model_name!r} ({_one_line(e)}). Fix: set "
                f"{PRETRAINED_OPTION} to a weights file of the {model_name!r} architecture, or set model_name to the "
                f"architecture the file was saved from.") from e
    model = model.to(device).eval().requires_grad_(False)
    return model, ImagePreprocess.from_model(model), oc.get_tokenizer(model_name)


def _resize_crop(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Resize (N, C, H, W) so that it covers ``size`` (shortest side), then centre-crop to ``size``."""
    h, w = x.shape[-2:]
    th, tw = size
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=nh < h or nw < w)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[..., top:top + th, left:left + tw]


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def encode_images(
    model: torch.nn.Module,
    images: np.ndarray,
    preprocess: ImagePreprocess,
    batch_size: int = 64,
    max_value: float | None = None,
) -> np.ndarray:
    """L2-normalised CLIP image embeddings, float32 (N, E).

    Args:
        images: (N, H, W) grayscale or (N, H, W, 3) / (N, H, W, 1) channels-last images.
        preprocess: see :meth:`ImagePreprocess.from_model`.
        max_value: the value of white (pixels are divided by it to reach [0, 1]); ``None`` = 255 for uint8
            input, else the array's maximum (16 for scikit-learn's digits). Gray is replicated to 3 channels,
            resized to the model's size, clamped to [0, 1] and normalised with its mean / std.
    """
    arr = np.asarray(images)
    if arr.ndim == 4 and arr.shape[-1] in (1, 3):
        pass
    elif arr.ndim != 3:
        raise ValueError(f"images must be (N, H, W) grayscale or (N, H, W, 3) RGB, got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError("no images to encode")
    if max_value is None:
        max_value = 255.0 if arr.dtype == np.uint8 else float(arr.max())
    scale = 1.0 / (max_value if max_value > 0 else 1.0)
    device = _device(model)
    mean = torch.tensor(preprocess.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    out = []
    for start in range(0, len(arr), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(arr[start:start + batch_size], dtype=np.float32)).to(device) * scale
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        x = _resize_crop(x, preprocess.size, preprocess.interpolation).clamp(0.0, 1.0)
        emb = model.encode_image(((x - mean) / std).contiguous(), normalize=True)
        out.append(emb.float().cpu().numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


@torch.inference_mode()
def encode_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
    """L2-normalised CLIP text embeddings, float32 (T, E)."""
    if len(texts) == 0:
        raise ValueError("no texts to encode")
    device = _device(model)
    out = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start:start + batch_size])).to(device)
        out.append(model.encode_text(tokens, normalize=True).float().cpu().numpy())
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
