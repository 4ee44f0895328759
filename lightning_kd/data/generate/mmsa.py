"""Writer of MMSA feature pickles (``aligned_50.pkl`` / ``unaligned_50.pkl`` layout), read by the real reader
(:mod:`lightning_kd.data.formats.mmsa`), so tests and demos run the real reader.

Generative model (:func:`write_mmsa_pickle`, factor model of :mod:`lightning_kd.data.generate.base`), per
sample ``i`` (K = 4):

* latent factors: shared ``s_i ~ N(0, I_K)`` seen by every modality, private ``p_i^m ~ N(0, I_K)``
  seen by modality ``m`` only (m = text, audio, vision);
* label ``y_i = 0.7 u_s.s_i + 0.8 u_t.p_i^t + 0.6 u_v.p_i^v + 0.2 u_a.p_i^a + 0.1 e_i`` with fixed
  unit vectors ``u``, scaled to std 1.5, clipped to [-3, 3] and rounded to the 1/5 grid (so some labels
  are exactly 0, as in MOSI);
* features of modality ``m`` at step ``t``: ``x_it = b_m + g_it [s_i, p_i^m] W_m + sigma_m n_it`` with a
  fixed projection ``W_m`` (2K, D_m), offset ``b_m``, temporal modulation
  ``g_it = 1 + 0.5 sin(2 pi t / P_m + phi_i)`` and noise levels sigma text 0.8 < vision 1.0 < audio 3.0;
  text carries the largest private label weight and audio the smallest, so text is the most
  informative modality and audio the least;
* a valid length per sample, uniform in [0.4 L, L], zero padding after it; aligned files share the text
  length across modalities, unaligned files draw audio/vision lengths separately (``*_lengths`` keys);
  about 0.5% of valid audio values are -inf, as COVAREP writes them;
* ``text_bert`` holds ``[CLS]=101 ... [SEP]=102`` ids (float64, as real files store them), attention
  mask 1 on valid tokens, segment ids 0.

The model (W, b, u) depends on ``seed`` only; each split draws its own samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.data.generate.base import (
    MODALITIES,
    NOISE,
    PERIOD,
    SPLITS,
    GeneratedOnFirstUse,
    K,
    sentiment_labels,
    sequence,
    valid_lengths,
    write_pickle,
)
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import StorageDtype

__all__ = ["SyntheticMMSADataModule", "default_lengths", "write_mmsa_pickle"]


def default_lengths(aligned: bool) -> tuple[int, int, int]:
    """MOSI sequence lengths: (50, 50, 50) aligned, (50, 375, 500) unaligned."""
    return (50, 50, 50) if aligned else (50, 375, 500)


def _build_mmsa(
    n: tuple[int, int, int], dims: tuple[int, int, int], lengths: tuple[int, int, int], aligned: bool, seed: int
) -> dict[str, dict[str, Any]]:
    if aligned and len(set(lengths)) != 1:
        raise ValueError(f"aligned data needs equal lengths for text/audio/vision, got {lengths}")
    if min(dims) < 1 or min(lengths) < 1 or min(n) < 0:
        raise ValueError(f"need dims >= 1, lengths >= 1, n >= 0; got n={n}, dims={dims}, lengths={lengths}")
    rng = np.random.default_rng([seed, 0])
    dim = dict(zip(MODALITIES, dims))
    steps = dict(zip(MODALITIES, lengths))
    w = {m: rng.standard_normal((2 * K, dim[m])) / np.sqrt(2 * K) for m in MODALITIES}
    b = {m: (0.5 * rng.standard_normal(dim[m])).astype(np.float32) for m in MODALITIES}
    u = {k: (lambda v: v / np.linalg.norm(v))(rng.standard_normal(K)) for k in ("shared", *MODALITIES)}

    out: dict[str, dict[str, Any]] = {}
    for si, split in enumerate(SPLITS):
        r = np.random.default_rng([seed, 1 + si])
        ns = n[si]
        shared = r.standard_normal((ns, K))
        private = {m: r.standard_normal((ns, K)) for m in MODALITIES}
        y = sentiment_labels(r, shared, private, u)

        lens = {"text": valid_lengths(r, ns, steps["text"], lo=2)}
        for m in ("audio", "vision"):
            lens[m] = lens["text"] if aligned else valid_lengths(r, ns, steps[m])
        feats = {
            m: sequence(r, np.concatenate([shared, private[m]], 1), w[m], b[m], lens[m], steps[m], PERIOD[m], NOISE[m])
            for m in MODALITIES
        }
        audio = feats["audio"]
        k = int(0.005 * lens["audio"].sum() * dim["audio"]) + 1 if ns else 0  # ~0.5% of valid values
        i = r.integers(0, max(ns, 1), size=k)
        audio[i, (r.random(k) * lens["audio"][i]).astype(np.int64), r.integers(0, dim["audio"], size=k)] = -np.inf

        lt = steps["text"]
        valid_t = np.arange(lt)[None, :] < lens["text"][:, None]
        ids = np.where(valid_t, r.integers(1000, 30000, size=(ns, lt)), 0)
        ids[:, 0] = 101
        ids[np.arange(ns), lens["text"] - 1] = 102
        text_bert = np.stack([ids, valid_t, np.zeros_like(ids)], axis=1).astype(np.float64)

        cls = np.sign(y).astype(np.int64) + 1  # 0 negative, 1 neutral, 2 positive
        d: dict[str, Any] = {
            "raw_text": np.array([f"synthetic utterance {i}" for i in range(ns)]),
            "audio": audio,
            "vision": feats["vision"],
            "id": np.array([f"synth{split}_{i:05d}$_$0" for i in range(ns)]),
            "text": feats["text"],
            "text_bert": text_bert,
            "annotations": [("Negative", "Neutral", "Positive")[c] for c in cls],
            "classification_labels": cls,
            "regression_labels": y,
        }
        if not aligned:  # real unaligned files store the lengths as Python lists of ints
            d["audio_lengths"] = [int(v) for v in lens["audio"]]
            d["vision_lengths"] = [int(v) for v in lens["vision"]]
        out[split] = d
    return out


def write_mmsa_pickle(
    path: str | Path,
    *,
    n: tuple[int, int, int] = (1284, 229, 686),
    dims: tuple[int, int, int] = (768, 5, 20),
    lengths: tuple[int, int, int] | None = None,
    aligned: bool = True,
    seed: int = 0,
) -> Path:
    """Write a synthetic MMSA feature pickle in the real layout (see the module docstring).

    Args:
        path: output file; written atomically (temporary file in the same folder, then renamed).
        n: samples in train / valid / test (default: MOSI).
        dims: text / audio / vision feature sizes (default: MOSI, 768 / 5 / 20).
        lengths: text / audio / vision padded lengths; default (50, 50, 50) aligned, (50, 375, 500) unaligned.
        aligned: word-aligned file (no ``*_lengths`` keys) or unaligned file.
        seed: the file is a pure function of its arguments.

    Returns:
        The path written.
    """
    path = Path(path)
    data = _build_mmsa(tuple(n), tuple(dims), tuple(lengths or default_lengths(aligned)), aligned, seed)
    write_pickle(data, path)
    return path


class SyntheticMMSADataModule(GeneratedOnFirstUse, MMSADataModule):
    """:class:`MMSADataModule` over a generated file; runs anywhere, through the real reader.

    Args:
        path: file to use; ``None`` gives ``data/synthetic/mmsa_{aligned|unaligned}_{n}_{dims}_{lengths}_{data_seed}.pkl``
            under the current directory. The file is generated when it does not exist, else reused.
        n, dims, lengths, aligned, data_seed: arguments of :func:`write_mmsa_pickle`.
        Other arguments: see :class:`MMSADataModule`.
    """

    def __init__(
        self,
        path: str | None = None,
        n: tuple[int, int, int] = (1284, 229, 686),
        dims: tuple[int, int, int] = (768, 5, 20),
        lengths: tuple[int, int, int] | None = None,
        aligned: bool = True,
        data_seed: int = 0,
        text: Literal["features", "bert_ids"] = "features",
        label_range: float = 3.0,
        batch_size: int = 16,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        train_missing: MissingAugmentation | None = None,
        eval_missing: MissingCondition | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        self.n, self.dims, self.aligned, self.data_seed = tuple(n), tuple(dims), aligned, data_seed
        self.lengths = tuple(lengths or default_lengths(aligned))
        if path is None:
            j = lambda v: "-".join(map(str, v))  # noqa: E731
            name = f"mmsa_{'aligned' if aligned else 'unaligned'}_{j(self.n)}_{j(self.dims)}_{j(self.lengths)}_{data_seed}.pkl"
            path = str(Path("data") / "synthetic" / name)
        super().__init__(
            path, text=text, label_range=label_range, batch_size=batch_size, seed=seed,
            predict_split=predict_split, eval_batch_size=eval_batch_size,
            train_missing=train_missing, eval_missing=eval_missing, storage_dtype=storage_dtype,
        )

    def write_file(self, path: Path) -> None:
        write_mmsa_pickle(path, n=self.n, dims=self.dims, lengths=self.lengths, aligned=self.aligned, seed=self.data_seed)
