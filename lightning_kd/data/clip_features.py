"""CLIP features of image data sets: image embeddings, TAC-style text semantics, and an on-disk cache.

This is the image path of this project's interpretation of VLSG (Ke et al., "Integrating Vision-Language
Semantic Graphs in Multi-View Clustering", IJCAI 2024; no official code is public): view 1 is the CLIP image
embedding of each sample, view 2 its text counterpart built as in TAC (Li et al., "Image Clustering with External
Guidance", ICML 2024) from a FIXED, data-independent noun vocabulary (:func:`load_nouns`); no class names are used.

Encoder outputs (image embeddings and noun embeddings) are cached in one ``.npz`` per setting
(:class:`FeatureCache`), keyed on everything they depend on, so a second run neither encodes nor builds the model.
The text view itself is recomputed from the cached embeddings each time (k-means + softmax, well under a second),
so changing ``temperature`` or the noun-selection settings never re-encodes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_kd.io import atomic_write_binary, file_sha256
from lightning_kd.nn.clip_encoder import (
    check_weights_args,
    encode_images,
    encode_texts,
    load_open_clip,
    open_clip_module,
)

__all__ = [
    "CACHE_VERSION", "DEFAULT_NOUNS", "DEFAULT_TEMPLATES", "FeatureCache", "array_fingerprint", "cached",
    "clip_embeddings", "default_device", "file_sha256", "load_nouns", "noun_embeddings", "select_nouns",
    "text_semantics",
]

#: bump when a code change alters cached outputs (image preprocessing, noun averaging, ...)
CACHE_VERSION = 1
#: the packaged vocabulary: ~800 common concrete English nouns, generic (not chosen for any data set)
DEFAULT_NOUNS = Path(__file__).with_name("nouns.txt")
#: generic prompt templates; each noun's embedding is the normalised mean over them
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.", "a drawing of a {}.", "an image of a {}.")


# -- vocabulary and text semantics -------------------------------------------------------------------------------
def load_nouns(path: str | Path | None = None) -> list[str]:
    """Nouns, one per line (blank lines and ``#`` comments skipped, duplicates dropped); ``None`` = the packaged
    :data:`DEFAULT_NOUNS`."""
    p = DEFAULT_NOUNS if path is None else Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: noun vocabulary file not found. Fix: set data.init_args.nouns_file to a text "
                                f"file with one noun per line, or leave it null for the packaged list.")
    nouns = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
    nouns = list(dict.fromkeys(n for n in nouns if n and not n.startswith("#")))
    if not nouns:
        raise ValueError(f"{p}: the noun vocabulary is empty")
    return nouns


def _check_templates(templates: Sequence[str]) -> list[str]:
    templates = list(templates)
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError(f"templates must be a non-empty list of strings with exactly one '{{}}', got {templates!r}")
    return templates


def noun_embeddings(model: Any, tokenizer: Any, nouns: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                    batch_size: int = 256) -> np.ndarray:
    """(T, E) float32: per noun, the re-normalised mean of the normalised embeddings of every template filled
    with it."""
    templates = _check_templates(templates)
    texts = [t.format(n) for n in nouns for t in templates]
    emb = encode_texts(model, tokenizer, texts, batch_size).reshape(len(nouns), len(templates), -1).mean(axis=1)
    return _normalise(emb).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def select_nouns(image_emb: np.ndarray, noun_emb: np.ndarray, keep_per_centre: int = 5, n_centres: int | None = None,
                 samples_per_centre: int = 300, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of the nouns kept for the text view, as in TAC: k-means of the image embeddings into
    ``n_centres`` centres (``None`` = ``max(1, N // samples_per_centre)``, capped at N), then the union over centres
    of each centre's ``keep_per_centre`` most cosine-similar nouns."""
    from sklearn.cluster import KMeans

    img = _normalise(image_emb)
    nouns = _normalise(noun_emb)
    if len(img) == 0 or len(nouns) == 0:
        raise ValueError(f"need at least one image and one noun, got {len(img)} images and {len(nouns)} nouns")
    k = max(1, len(img) // samples_per_centre) if n_centres is None else n_centres
    k = max(1, min(k, len(img)))
    centres = img.mean(axis=0, keepdims=True) if k == 1 else (
        KMeans(n_clusters=k, n_init=10, random_state=seed).fit(img).cluster_centers_)
    sim = _normalise(centres) @ nouns.T  # (k, T)
    keep = min(keep_per_centre, len(nouns))
    top = np.argsort(-sim, axis=1, kind="stable")[:, :keep]
    return np.unique(top)


def text_semantics(image_emb: np.ndarray, noun_emb: np.ndarray, temperature: float = 0.005, keep_per_centre: int = 5,
                   n_centres: int | None = None, samples_per_centre: int = 300, seed: int = 0) -> np.ndarray:
    """Each image's text counterpart, float32 (N, E): ``softmax(cos(image, kept nouns) / temperature) @ kept nouns``.

    This project's interpretation of VLSG's text semantics, following TAC (Li et al., ICML 2024): the kept nouns
    are chosen by :func:`select_nouns` from a fixed, data-independent vocabulary (no class names), then mixed with
    TAC's temperature 0.005. The mix is not re-normalised. A tiny temperature gives (nearly) the nearest kept noun.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    kept = _normalise(noun_emb)[select_nouns(image_emb, noun_emb, keep_per_centre, n_centres, samples_per_centre,
                                             seed)]
    logits = _normalise(image_emb) @ kept.T / temperature
    logits -= logits.max(axis=1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(w @ kept, dtype=np.float32)


# -- cache --------------------------------------------------------------------------------------------------------
def array_fingerprint(a: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and C-order bytes."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _canonical(parts: Mapping[str, Any]) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=list)


class FeatureCache:
    """A folder of ``<prefix>-<sha256 of the canonical JSON of the key parts>.npz`` files, written atomically.

    The key parts are stored in the file too (``_key``) and checked on load. A file that cannot be read, or whose
    stored key or arrays do not match, is recomputed and overwritten with a warning (never an error).
    """

    def __init__(self, cache_dir: str | Path, prefix: str = "features") -> None:
        self.cache_dir = Path(cache_dir).expanduser()
        self.prefix = prefix

    def path(self, key_parts: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(_canonical(key_parts).encode()).hexdigest()
        return self.cache_dir / f"{self.prefix}-{digest}.npz"

    def load(self, key_parts: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, np.ndarray] | None:
        """The cached arrays, or ``None`` when absent or unusable (a warning says why in the latter case)."""
        path = self.path(key_parts)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: np.array(z[k]) for k in z.files}
            stored = str(arrays.pop("_key", ""))
            if stored != _canonical(key_parts):
                raise ValueError("its stored key differs from the expected one")
            missing = [k for k in required if k not in arrays]
            if missing:
                raise ValueError(f"arrays {missing} are missing")
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated / corrupt npz files raise many types
            rank_zero_warn(f"cache file {path} is unusable ({type(e).__name__}: {e}); recomputing and overwriting it")
            return None
        return arrays

    def save(self, key_parts: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
        path = self.path(key_parts)
        payload = {**{k: np.ascontiguousarray(v) for k, v in arrays.items()}, "_key": np.array(_canonical(key_parts))}
        atomic_write_binary(path, lambda f: np.savez(f, **payload))
        return path

    def get_or_compute(self, key_parts: Mapping[str, Any], compute: Callable[[], Mapping[str, np.ndarray]],
                       hit_msg: str = "loaded features from cache {path}",
                       miss_msg: str = "computed features, cached at {path}") -> dict[str, np.ndarray]:
        """Cached arrays for ``key_parts``, or ``compute()``'s (saved first); logs ``hit_msg`` / ``miss_msg`` with
        ``{path}`` replaced by the cache file."""
        arrays = self.load(key_parts)
        if arrays is not None:
            rank_zero_info(hit_msg.replace("{path}", str(self.path(key_parts))))
            return arrays
        arrays = {k: np.asarray(v) for k, v in compute().items()}
        if any(k.startswith("_") for k in arrays):
            raise ValueError(f"array names starting with '_' are reserved, got {sorted(arrays)}")
        path = self.save(key_parts, arrays)
        rank_zero_info(miss_msg.replace("{path}", str(path)))
        return arrays


def cached(cache_dir: str | Path, key_parts: Mapping[str, Any], compute: Callable[[], Mapping[str, np.ndarray]],
           **messages: str) -> dict[str, np.ndarray]:
    """Shorthand for ``FeatureCache(cache_dir).get_or_compute(key_parts, compute, **messages)``."""
    return FeatureCache(cache_dir).get_or_compute(key_parts, compute, **messages)


def clip_embeddings(
    images: np.ndarray,
    *,
    data_name: str,
    model_name: str,
    pretrained: str | None,
    random_init: bool = False,
    cache_dir: str | Path = "data/cache/clip",
    nouns: Sequence[str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    max_value: float | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    random_init_seed: int = 0,
) -> dict[str, np.ndarray]:
    """CLIP embeddings of ``images`` and of the noun vocabulary, from the cache when possible.

    Returns ``{"image": (N, E), "nouns": (T, E)}`` float32, L2-normalised. The cache key holds the model name and
    open_clip config, the weights' identity (sha256 of the file, or the random-init seed), the images' fingerprint,
    ``max_value``, the nouns and templates, the open_clip version and :data:`CACHE_VERSION`; batch size and device
    only change results at rounding level and are not part of it. On a hit the model is never built.
    See :func:`~lightning_kd.nn.clip_encoder.load_open_clip` for ``pretrained`` / ``random_init`` and its errors.
    """
    weights_path = check_weights_args(model_name, pretrained, random_init)
    nouns = load_nouns() if nouns is None else list(nouns)
    templates = _check_templates(templates)
    oc = open_clip_module()
    model_cfg = oc.get_model_config(model_name)
    if model_cfg is None:
        raise ValueError(f"unknown open_clip model_name {model_name!r} (see open_clip.list_models())")
    key = {
        "kind": "clip-embeddings", "version": CACHE_VERSION, "open_clip": getattr(oc, "__version__", "?"),
        "model_name": model_name, "model_config": model_cfg,
        "weights": f"random_init:seed={random_init_seed}" if weights_path is None
        else f"sha256:{file_sha256(weights_path)}",
        "data": {"name": data_name, "fingerprint": array_fingerprint(images), "max_value": max_value},
        "nouns_sha256": hashlib.sha256("\n".join(nouns).encode()).hexdigest(), "n_nouns": len(nouns),
        "templates": templates,
    }

    def compute() -> dict[str, np.ndarray]:
        model, preprocess, tokenizer = load_open_clip(model_name, pretrained, random_init, device=device,
                                                      seed=random_init_seed)
        return {"image": encode_images(model, images, preprocess, batch_size, max_value),
                "nouns": noun_embeddings(model, tokenizer, nouns, templates)}

    source = "random weights" if weights_path is None else str(weights_path)
    prefix = "clip-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", data_name)
    return FeatureCache(cache_dir, prefix=prefix).get_or_compute(
        key, compute, hit_msg="loaded CLIP features from cache {path}",
        miss_msg=f"encoded {len(images)} images and {len(nouns)} nouns with {model_name} ({source}), "
                 "cached at {path}")


def default_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when a GPU is visible, else ``"cpu"``; anything else is returned as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
