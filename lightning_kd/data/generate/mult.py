"""Generator of MulT-style pickles (``iemocap_data.pkl`` / ``mosi_data.pkl`` layout), read by the real reader.

Generative model (:func:`write_mult_pickle`), per sample ``i`` (K = 4), the same factor model as the MMSA
generator (:mod:`lightning_kd.data.generate.base`):

* latent factors: shared ``s_i ~ N(0, I_K)`` seen by every modality, private ``p_i^m ~ N(0, I_K)`` seen by
  modality ``m`` only;
* features of modality ``m`` at step ``t``: ``b_m + g_it [s_i, p_i^m] W_m + sigma_m n_it`` (noise text 0.8 <
  vision 1.0 < audio 3.0), on a valid length uniform in [0.4 L, L] shared by the three modalities (aligned
  files) and zero padded at the START, as MulT stores its sequences; about 2 % of valid text steps (words
  without a GloVe vector) and 3 % of valid vision steps (no face found) are all zero, ~0.5 % of valid audio
  values are -inf (COVAREP), and vision is stored as float64;
* IEMOCAP labels: four scores ``c_ie = 0.7 U_s[e].s_i + 0.8 U_t[e].p_i^t + 0.6 U_v[e].p_i^v + 0.2 U_a[e].p_i^a +
  0.3 e_ie + o_e`` with fixed unit rows ``U``; the one emotion present is ``argmax_e c_ie`` (exactly one per
  sample by default; with ``no_emotion`` / ``several_emotions`` that fraction of each split's samples, drawn from
  a stream of their own so the rest of the file is unchanged, has no emotion present / also the second-highest
  one, as real IEMOCAP rows can). Offsets ``o`` are calibrated (on a fixed Monte-Carlo sample) to class
  frequencies Neutral 0.4, Happy / Sad / Angry 0.2 each, so weighted F1 and accuracy differ. Stored as (N, 4, 2)
  float32 one-hot per emotion ([1, 0] absent, [0, 1] present);
* MOSI labels: the MMSA generator's score ``0.7 u_s.s + 0.8 u_t.p^t + 0.6 u_v.p^v + 0.2 u_a.p^a + 0.1 e``,
  scaled to std 1.5, clipped to [-3, 3], rounded to the 1/5 grid, stored as (N, 1, 1) float32;
* ``id``: (N, 3) byte strings (video id, start, end).

Text carries the largest private weight and audio the smallest, so text is the most informative modality
and audio the least. The model (W, b, U, o) depends on ``seed`` only; each split draws its own samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_kd.data.formats.mult import EMOTIONS, MulTDataModule, Task
from lightning_kd.data.generate.base import (
    MODALITIES,
    NOISE,
    PERIOD,
    SPLITS,
    GeneratedOnFirstUse,
    K,
    sentiment_labels,
    sequence,
    write_pickle,
)
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import StorageDtype

__all__ = ["MULT_DEFAULTS", "SyntheticMulTDataModule", "write_mult_pickle"]

Dataset = Literal["iemocap", "mosi"]

#: per data set: samples (train, valid, test), dims (text, audio, vision) and aligned length of the MulT files
MULT_DEFAULTS: dict[str, dict[str, Any]] = {
    "iemocap": {"n": (2717, 798, 938), "dims": (300, 74, 35), "length": 20},
    "mosi": {"n": (1284, 229, 686), "dims": (300, 5, 20), "length": 50},
}
_EMO_W = {"shared": 0.7, "text": 0.8, "vision": 0.6, "audio": 0.2, "noise": 0.3}
_EMO_FREQ = np.array([0.4, 0.2, 0.2, 0.2])  # Neutral, Happy, Sad, Angry
_ZERO_STEPS = {"text": 0.02, "vision": 0.03}  # fraction of valid steps stored as all-zero vectors


def _unit_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    u = rng.standard_normal((rows, K))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def _emotion_scores(u: dict[str, np.ndarray], shared: np.ndarray, private: dict[str, np.ndarray],
                    noise: np.ndarray) -> np.ndarray:
    c = _EMO_W["shared"] * shared @ u["shared"].T + _EMO_W["noise"] * noise
    for m in MODALITIES:
        c += _EMO_W[m] * private[m] @ u[m].T
    return c


def _calibrate_offsets(u: dict[str, np.ndarray], rng: np.random.Generator, samples: int = 20000) -> np.ndarray:
    """Offsets that make ``argmax(scores + o)`` hit :data:`_EMO_FREQ` on a fixed Monte-Carlo sample."""
    e = len(EMOTIONS)
    shared = rng.standard_normal((samples, K))  # drawn in this order: shared, private per modality, noise
    private = {m: rng.standard_normal((samples, K)) for m in MODALITIES}
    c = _emotion_scores(u, shared, private, rng.standard_normal((samples, e)))
    o = np.zeros(e)
    for _ in range(200):
        freq = np.bincount((c + o).argmax(1), minlength=e) / samples
        o += 0.5 * (np.log(_EMO_FREQ) - np.log(np.maximum(freq, 1e-4)))
        o -= o.mean()
    return o


def _left_pad(x: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Move each sample's first ``lens[i]`` steps to the end of the sequence; zeros before them."""
    steps = x.shape[1]
    src = np.arange(steps)[None, :] - (steps - lens)[:, None]  # (N, L) source step, < 0 = padding
    out = np.take_along_axis(x, np.maximum(src, 0)[..., None], axis=1)
    out *= (src >= 0)[..., None]
    return out


def _resolve(dataset: str, n: tuple[int, int, int] | None, dims: tuple[int, int, int] | None,
             length: int | None) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Fill ``None`` arguments with the data set's defaults."""
    if dataset not in MULT_DEFAULTS:
        raise ValueError(f"dataset must be one of {sorted(MULT_DEFAULTS)}, got {dataset!r}")
    d = MULT_DEFAULTS[dataset]
    return (tuple(d["n"] if n is None else n), tuple(d["dims"] if dims is None else dims),
            int(d["length"] if length is None else length))


def _odd_emotions(labels: np.ndarray, scores: np.ndarray, no_emotion: float, several: float,
                  rng: np.random.Generator) -> None:
    """In place: ``round(no_emotion N)`` samples lose their emotion, ``round(several N)`` others gain their
    second-highest one."""
    ns = len(labels)
    k0, k2 = int(round(no_emotion * ns)), int(round(several * ns))
    pick = rng.permutation(ns)
    none, more = pick[:k0], pick[k0 : k0 + k2]
    labels[none] = (1.0, 0.0)
    second = np.argsort(scores[more], axis=1)[:, -2]
    labels[more, second] = (0.0, 1.0)


def _build_mult(dataset: Dataset, n: tuple[int, int, int], dims: tuple[int, int, int], length: int,
                seed: int, no_emotion: float = 0.0, several: float = 0.0) -> dict[str, dict[str, Any]]:
    if dataset not in MULT_DEFAULTS:
        raise ValueError(f"dataset must be one of {sorted(MULT_DEFAULTS)}, got {dataset!r}")
    if not (0.0 <= no_emotion <= 1.0 and 0.0 <= several <= 1.0 and no_emotion + several <= 1.0):
        raise ValueError(f"no_emotion and several_emotions are fractions of the samples with a sum <= 1; got "
                         f"{no_emotion} and {several}")
    if (no_emotion or several) and dataset != "iemocap":
        raise ValueError("no_emotion / several_emotions apply to emotion labels (dataset 'iemocap') only")
    if len(n) != 3 or len(dims) != 3 or min(dims) < 1 or length < 1 or min(n) < 0:
        raise ValueError(f"need 3 split sizes >= 0, 3 dims >= 1 and length >= 1; got n={n}, dims={dims}, "
                         f"length={length}")
    rng = np.random.default_rng([seed, 0])
    dim = dict(zip(MODALITIES, dims))
    w = {m: rng.standard_normal((2 * K, dim[m])) / np.sqrt(2 * K) for m in MODALITIES}
    b = {m: (0.5 * rng.standard_normal(dim[m])).astype(np.float32) for m in MODALITIES}
    if dataset == "iemocap":
        u = {k: _unit_rows(rng, len(EMOTIONS)) for k in ("shared", *MODALITIES)}
        offsets = _calibrate_offsets(u, np.random.default_rng([seed, 99]))
    else:
        u = {k: _unit_rows(rng, 1)[0] for k in ("shared", *MODALITIES)}

    out: dict[str, dict[str, Any]] = {}
    for si, split in enumerate(SPLITS):
        r = np.random.default_rng([seed, 1 + si])
        ns = n[si]
        shared = r.standard_normal((ns, K))
        private = {m: r.standard_normal((ns, K)) for m in MODALITIES}
        if dataset == "iemocap":
            scores = _emotion_scores(u, shared, private, r.standard_normal((ns, len(EMOTIONS)))) + offsets
            labels = np.zeros((ns, len(EMOTIONS), 2), dtype=np.float32)
            labels[..., 0] = 1.0
            labels[np.arange(ns), scores.argmax(1)] = (0.0, 1.0)
            if no_emotion or several:
                _odd_emotions(labels, scores, no_emotion, several, np.random.default_rng([seed, 50 + si]))
        else:
            labels = sentiment_labels(r, shared, private, u).reshape(ns, 1, 1)

        lens = r.integers(min(length, max(1, int(np.ceil(0.4 * length)))), length + 1, size=ns)
        first = length - lens  # first valid step (left padding)
        feats: dict[str, np.ndarray] = {}
        for m in MODALITIES:
            z = np.concatenate([shared, private[m]], 1)
            x = _left_pad(sequence(r, z, w[m], b[m], lens, length, PERIOD[m], NOISE[m]), lens)
            if m in _ZERO_STEPS:  # missing word vectors / faces: all-zero vectors at valid steps
                drop = (r.random((ns, length)) < _ZERO_STEPS[m]) & (np.arange(length)[None, :] >= first[:, None])
                x[drop] = 0.0
            feats[m] = x
        audio = feats["audio"]
        k = int(0.005 * lens.sum() * dim["audio"]) + 1 if ns else 0  # ~0.5% of valid values, as COVAREP
        i = r.integers(0, max(ns, 1), size=k)
        audio[i, first[i] + (r.random(k) * lens[i]).astype(np.int64), r.integers(0, dim["audio"], size=k)] = -np.inf

        start = np.round(r.uniform(0, 60, ns), 3)
        ids = np.array([[f"synth_{split}_{j:05d}", f"{start[j]:.3f}", f"{start[j] + 0.2 * lens[j]:.3f}"]
                        for j in range(ns)], dtype=np.bytes_).reshape(ns, 3)
        out[split] = {
            "text": feats["text"],
            "audio": audio,
            "vision": feats["vision"].astype(np.float64),  # real Facet features are float64
            "labels": labels,
            "id": ids,
        }
    return out


def write_mult_pickle(
    path: str | Path,
    *,
    dataset: Dataset = "iemocap",
    n: tuple[int, int, int] | None = None,
    dims: tuple[int, int, int] | None = None,
    length: int | None = None,
    seed: int = 0,
    no_emotion: float = 0.0,
    several_emotions: float = 0.0,
) -> Path:
    """Write a synthetic MulT pickle in the real layout (see the module docstring).

    Args:
        path: output file; written atomically (temporary file in the same folder, then renamed).
        dataset: ``"iemocap"`` (emotion labels (N, 4, 2)) or ``"mosi"`` (sentiment labels (N, 1, 1)).
        n: samples in train / valid / test; default 2717 / 798 / 938 (IEMOCAP) or 1284 / 229 / 686 (MOSI).
        dims: text / audio / vision feature sizes; default 300 / 74 / 35 (IEMOCAP) or 300 / 5 / 20 (MOSI, as
            MulT's ``mosi_data.pkl``).
        length: aligned padded length; default 20 (IEMOCAP) or 50 (MOSI).
        seed: the file is a pure function of its arguments.
        no_emotion: IEMOCAP only: fraction of each split's samples with no emotion present.
        several_emotions: IEMOCAP only: fraction of each split's samples with two emotions present.

    Returns:
        The path written.
    """
    path = Path(path)
    data = _build_mult(dataset, *_resolve(dataset, n, dims, length), seed, no_emotion, several_emotions)
    write_pickle(data, path)
    return path


class SyntheticMulTDataModule(GeneratedOnFirstUse, MulTDataModule):
    """:class:`MulTDataModule` over a generated file; runs anywhere, through the real reader.

    Args:
        path: file to use; ``None`` gives ``data/synthetic/mult_{dataset}_{n}_{dims}_{length}_{data_seed}.pkl``
            (plus ``_none{f}_several{f}`` when those are set) under the current directory. The file is generated
            when it does not exist, else reused.
        dataset, n, dims, length, data_seed, no_emotion, several_emotions: arguments of :func:`write_mult_pickle`
            (``None`` = the data set's default; ``data_seed`` is its ``seed``).
        Other arguments: see :class:`MulTDataModule`.
    """

    def __init__(
        self,
        path: str | None = None,
        dataset: Dataset = "iemocap",
        n: tuple[int, int, int] | None = None,
        dims: tuple[int, int, int] | None = None,
        length: int | None = None,
        data_seed: int = 0,
        no_emotion: float = 0.0,
        several_emotions: float = 0.0,
        task: Task = "auto",
        label_range: float = 3.0,
        batch_size: int = 32,
        seed: int | None = None,
        predict_split: str = "test",
        eval_batch_size: int | None = None,
        train_missing: MissingAugmentation | None = None,
        eval_missing: MissingCondition | None = None,
        storage_dtype: StorageDtype = "float32",
    ) -> None:
        self.dataset, self.data_seed = dataset, data_seed
        self.n, self.dims, self.length = _resolve(dataset, n, dims, length)
        self.no_emotion, self.several_emotions = no_emotion, several_emotions
        if path is None:
            j = lambda v: "-".join(map(str, v))  # noqa: E731
            odd = f"_none{no_emotion:g}_several{several_emotions:g}" if no_emotion or several_emotions else ""
            name = f"mult_{dataset}_{j(self.n)}_{j(self.dims)}_{self.length}_{data_seed}{odd}.pkl"
            path = str(Path("data") / "synthetic" / name)
        super().__init__(
            path, task=task, label_range=label_range, batch_size=batch_size, seed=seed, predict_split=predict_split,
            eval_batch_size=eval_batch_size, train_missing=train_missing, eval_missing=eval_missing,
            storage_dtype=storage_dtype,
        )

    def write_file(self, path: Path) -> None:
        write_mult_pickle(path, dataset=self.dataset, n=self.n, dims=self.dims, length=self.length, seed=self.data_seed,
                          no_emotion=self.no_emotion, several_emotions=self.several_emotions)
