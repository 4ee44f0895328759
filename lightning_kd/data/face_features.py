"""Face features from the video itself (``face_features: backbone``): frames decoded with PyAV and passed through a
timm image backbone built from a LOCAL weights file (or randomly initialised, for tests), cached on disk.

Per video, the frames at the requested times are resized to ``input_size`` (bilinear), normalised with the
backbone's mean / std and embedded with its pooled features (``num_classes=0``): ``(n_times, D)`` float32.
The cache (:class:`~lightning_kd.data.clip_features.FeatureCache`, one ``.npz`` per video and setting) is keyed on
the video's bytes (sha256), the weights (sha256 of the file, or the random-init seed), the backbone name, the
input size, the times (fingerprint), the timm version and :data:`CACHE_VERSION`; a hit never builds the model.
Nothing is downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_kd.checkpoint import WeightsError
from lightning_kd.data.clip_features import FeatureCache, array_fingerprint, default_device
from lightning_kd.data.formats.video import read_frames
from lightning_kd.io import file_sha256

__all__ = ["CACHE_VERSION", "VideoBackboneFeatures", "build_backbone"]

#: bump when a code change alters cached outputs (resizing, normalisation, pooling)
CACHE_VERSION = 1
WEIGHTS_OPTION = "data.init_args.video_weights"


def build_backbone(name: str, weights: str | Path | None, seed: int = 0) -> torch.nn.Module:
    """``timm.create_model(name, pretrained=False, num_classes=0)`` in eval mode, its weights from the local file
    ``weights`` (a timm / torch state dict, ``.safetensors`` / ``.pth`` / ``.bin``; classifier keys are ignored),
    or random with ``seed`` when ``weights`` is ``None`` (the global RNG is left untouched).

    Raises:
        WeightsError: unknown timm model, weights file missing or not matching the architecture (one line naming
            :data:`WEIGHTS_OPTION`).
    """
    import timm

    if not timm.is_model(name):
        raise WeightsError(f"video_backbone {name!r} is not a timm model. Fix: set data.init_args.video_backbone to a "
                           "name from timm.list_models(), e.g. resnet18 (resnet10t or test_vit for a tiny test model).")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False, num_classes=0)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            hint = "a directory" if path.is_dir() else "no such file"
            raise WeightsError(f"{path}: video backbone weights not found ({hint}). "
                               f"Fix: set {WEIGHTS_OPTION} to a local weights file for {name!r} (nothing is "
                               "downloaded), or null for random weights (tests only).")
        try:
            state = timm.models.load_state_dict(str(path), weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch / safetensors raise many types
            raise WeightsError(f"{path}: cannot read video backbone weights ({type(e).__name__}: {e}). Fix: set "
                               f"{WEIGHTS_OPTION} to a torch or safetensors state dict of {name!r}.") from None
        own = model.state_dict()
        state = {k: v for k, v in state.items() if k in own}
        missing = [k for k in own if k not in state]
        wrong = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or wrong:
            what = f"lacks {len(missing)} tensors (e.g. {missing[0]!r})" if missing else \
                f"has {len(wrong)} tensors of another shape (e.g. {wrong[0]!r})"
            raise WeightsError(f"{path}: {what} of the timm model {name!r}. Fix: set {WEIGHTS_OPTION} to weights of "
                               "this architecture, or data.init_args.video_backbone to the architecture of these "
                               "weights.")
        model.load_state_dict(state, strict=True)
    return model.eval()


class VideoBackboneFeatures:
    """Cached backbone features of face videos; call it as ``features(video, times_s) -> (n, D)`` float32.

    Args:
        backbone: timm model name.
        weights: local weights file, or ``None`` = random weights (seed ``random_init_seed``), for tests.
        input_size: frames are resized to ``input_size x input_size``.
        cache_dir: folder of the cache files.
        device: where the backbone runs (``auto``: a GPU when visible).
        batch_size: frames per forward pass.
    """

    def __init__(self, backbone: str, weights: str | Path | None, input_size: int, cache_dir: str | Path,
                 device: str = "cpu", batch_size: int = 64, random_init_seed: int = 0) -> None:
        self.backbone, self.weights, self.input_size = backbone, weights, int(input_size)
        self.cache = FeatureCache(cache_dir, prefix="face-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone))
        self.device, self.batch_size, self.random_init_seed = default_device(device), batch_size, random_init_seed
        self._model: torch.nn.Module | None = None
        self._weights_id: str | None = None
        #: videos encoded (cache misses) and read from the cache (hits) by this object
        self.encoded = self.hits = 0

    def weights_id(self) -> str:
        if self._weights_id is None:
            if self.weights is None:
                rank_zero_warn(f"face features from a RANDOMLY initialised {self.backbone} ({WEIGHTS_OPTION} is "
                               "null): fine for tests, meaningless for results")
                self._weights_id = f"random_init:seed={self.random_init_seed}"
            else:
                path = Path(self.weights).expanduser()
                if not path.is_file():
                    build_backbone(self.backbone, path)  # raises the one-line WeightsError
                self._weights_id = f"sha256:{file_sha256(path)}"
        return self._weights_id

    def key(self, video: Path, times_s: np.ndarray) -> dict:
        import timm

        return {"kind": "face-backbone", "version": CACHE_VERSION, "timm": timm.__version__,
                "backbone": self.backbone, "weights": self.weights_id(), "input_size": self.input_size,
                "video_sha256": file_sha256(video),
                "times": array_fingerprint(np.asarray(times_s, dtype=np.float64))}

    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = build_backbone(self.backbone, self.weights, self.random_init_seed).to(self.device)
        return self._model

    def __call__(self, video: str | Path, times_s: np.ndarray) -> np.ndarray:
        """``(len(times_s), D)`` float32 features of the frames of ``video`` at ``times_s``, cached."""
        video = Path(video)
        key = self.key(video, times_s)
        cached = self.cache.load(key, required=("features",))
        if cached is not None:
            self.hits += 1
            return cached["features"].astype(np.float32, copy=False)
        feats = self.encode(read_frames(video, times_s))
        self.cache.save(key, {"features": feats})
        self.encoded += 1
        return feats

    def summary(self) -> str:
        """E.g. ``face features (resnet18): 3 videos encoded, 40 from the cache data/cache/face``."""
        return (f"face features ({self.backbone}): {self.encoded} videos encoded, {self.hits} from the cache "
                f"{self.cache.cache_dir}")

    @torch.no_grad()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """``(n, H, W, 3)`` uint8 frames -> ``(n, D)`` float32 pooled backbone features."""
        model = self.model()
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean = torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406)), dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", (0.229, 0.224, 0.225)), dtype=torch.float32).view(1, 3, 1, 1)
        outs = []
        for i in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[i:i + self.batch_size])).permute(0, 3, 1, 2).float() / 255
            x = torch.nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                                                align_corners=False, antialias=True)
            x = ((x - mean) / std).to(self.device)
            outs.append(model(x).float().cpu().numpy())
        return np.concatenate(outs).astype(np.float32) if outs else np.zeros((0, 0), np.float32)
