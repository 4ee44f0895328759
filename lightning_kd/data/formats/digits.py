"""scikit-learn's handwritten digits (1797 8 x 8 grayscale images, 10 classes, shipped offline inside
scikit-learn) as a multi-view clustering data set of CLIP features.

Views (this project's interpretation of VLSG, IJCAI 2024, whose code is not public):

* ``"image"``: the open_clip image embedding of each digit (8 x 8 upscaled to the model's input size);
* ``"text"``: its TAC-style text counterpart (Li et al., ICML 2024): a softmax(sim / temperature)-weighted mix of
  the CLIP embeddings of the nouns of a fixed, data-independent vocabulary (no class names);
* ``"pixels"``: the 64 raw pixel values.

CLIP embeddings are cached under ``cache_dir`` (see :func:`~lightning_kd.data.clip_features.clip_embeddings`):
a second run with the same settings neither encodes nor builds the model.
"""

from __future__ import annotations

import numpy as np

from lightning_kd.data.clip_features import (
    DEFAULT_TEMPLATES,
    clip_embeddings,
    default_device,
    load_nouns,
    text_semantics,
)
from lightning_kd.data.formats.multiview import MultiViewDataModule
from lightning_kd.data.semantic_graph import SemanticGraph
from lightning_kd.data.split import StorageDtype
from lightning_kd.nn.clip_encoder import check_weights_args

__all__ = ["DIGITS_VIEWS", "DigitsCLIPDataModule", "load_digits_images"]

#: allowed view names
DIGITS_VIEWS = ("image", "text", "pixels")
#: value of a white pixel in scikit-learn's digits (pixels are 0..16)
DIGITS_MAX_VALUE = 16.0


def load_digits_images(n_samples: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n_samples`` (all when ``None``) digits: images float64 (N, 8, 8) in 0..16, labels int64 (N,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the digits data set ships with scikit-learn, which is not installed. "
                          "Fix: pip install scikit-learn") from e
    d = load_digits()
    images, labels = np.asarray(d.images), np.asarray(d.target, dtype=np.int64)
    if n_samples is not None:
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1 or null, got {n_samples}")
        images, labels = images[:n_samples], labels[:n_samples]
    return np.ascontiguousarray(images), np.ascontiguousarray(labels)


class DigitsCLIPDataModule(MultiViewDataModule):
    """scikit-learn's digits through an open_clip encoder: views in the order of ``views``; transductive like
    every :class:`MultiViewDataModule` (all samples in every split, labels only for evaluation).

    Args:
        model_name: open_clip architecture (e.g. ``ViT-B-32``; ``lkd-tiny-clip`` for tests).
        pretrained: LOCAL open_clip weights file for ``model_name`` (never downloaded); required unless
            ``random_init``.
        random_init: random (seeded) weights instead, for smoke tests.
        cache_dir: folder of the cached embeddings.
        views: any of ``"image"``, ``"text"``, ``"pixels"``, in order.
        text_temperature: softmax temperature of the text view (TAC: 0.005).
        nouns_file: noun vocabulary, one per line; ``None`` = the packaged generic list.
        templates: prompt templates with one ``{}``; ``None`` = the default generic ones.
        keep_per_centre: nouns kept per k-means centre of the image embeddings (TAC: 5).
        samples_per_centre: the number of centres is ``max(1, N // samples_per_centre)`` (TAC: 300).
        encode_batch_size: images per encoder batch.
        encode_device: device of the encoder (``"auto"``: CUDA when available); used only when encoding.
        n_samples: keep only the first ``n_samples`` digits (tests); ``None`` = all 1797.
        batch_size, seed, predict_split, eval_batch_size, standardize, semantic_graph: see
            :class:`MultiViewDataModule`; ``seed`` also seeds the k-means of the text view's noun selection.
    """

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        random_init: bool = False,
        cache_dir: str = "data/cache/clip",
        views: list[str] = ["image", "text"],  # noqa: B006 - read only
        text_temperature: float = 0.005,
        nouns_file: str | None = None,
        templates: list[str] | None = None,
        keep_per_centre: int = 5,
        samples_per_centre: int = 300,
        encode_batch_size: int = 64,
        encode_device: str = "auto",
        n_samples: int | None = None,
        batch_size: int = 256,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        standardize: bool = True,
        semantic_graph: SemanticGraph | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        super().__init__(path="", batch_size=batch_size, seed=seed, predict_split=predict_split,
                         eval_batch_size=eval_batch_size, standardize=standardize, semantic_graph=semantic_graph,
                         storage_dtype=storage_dtype)
        views = list(views)
        bad = [v for v in views if v not in DIGITS_VIEWS]
        if not views or bad or len(set(views)) != len(views):
            raise ValueError(f"views must be a non-empty list of distinct names from {list(DIGITS_VIEWS)}, got {views}")
        if text_temperature <= 0:
            raise ValueError(f"text_temperature must be > 0, got {text_temperature}")
        if keep_per_centre < 1 or samples_per_centre < 1:
            raise ValueError(f"keep_per_centre and samples_per_centre must be >= 1, got {keep_per_centre} and "
                             f"{samples_per_centre}")
        if random_init and pretrained is not None:  # fail at construction, not at setup()
            check_weights_args(model_name, pretrained, random_init)
        self.path = None
        self.model_name = model_name
        self.pretrained = pretrained
        self.random_init = random_init
        self.cache_dir = cache_dir
        self.views = views
        self.text_temperature = text_temperature
        self.nouns_file = nouns_file
        self.templates = list(templates) if templates is not None else list(DEFAULT_TEMPLATES)
        self.keep_per_centre = keep_per_centre
        self.samples_per_centre = samples_per_centre
        self.encode_batch_size = encode_batch_size
        self.encode_device = encode_device
        self.n_samples = n_samples
        self._embeddings: dict[str, np.ndarray] | None = None

    @property
    def needs_clip(self) -> bool:
        return any(v in ("image", "text") for v in self.views)

    def clip_embeddings(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``{"image": (N, E), "nouns": (T, E)}``, encoded once and cached on disk and in this object."""
        if self._embeddings is None:
            self._embeddings = clip_embeddings(
                images, data_name="sklearn-digits", model_name=self.model_name, pretrained=self.pretrained,
                random_init=self.random_init, cache_dir=self.cache_dir, nouns=load_nouns(self.nouns_file),
                templates=self.templates, max_value=DIGITS_MAX_VALUE, batch_size=self.encode_batch_size,
                device=default_device(self.encode_device))
        return self._embeddings

    def prepare_data(self) -> None:
        """Encode and cache once (Lightning calls this on one process per node before ``setup``)."""
        if self.needs_clip:
            self.clip_embeddings(load_digits_images(self.n_samples)[0])

    def read(self) -> tuple[list[np.ndarray], np.ndarray]:
        images, labels = load_digits_images(self.n_samples)
        emb = self.clip_embeddings(images) if self.needs_clip else {}
        out: list[np.ndarray] = []
        for v in self.views:
            if v == "image":
                x = emb["image"]
            elif v == "text":
                x = text_semantics(emb["image"], emb["nouns"], temperature=self.text_temperature,
                                   keep_per_centre=self.keep_per_centre, samples_per_centre=self.samples_per_centre,
                                   seed=self.effective_seed)
            else:
                x = images.reshape(len(images), -1)
            out.append(np.ascontiguousarray(x, dtype=np.float32))
        return out, labels
