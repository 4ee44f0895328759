"""CPU latency (batch 1) and throughput (batch 256) of each exported network: ONNX Runtime and TorchScript
(:mod:`lightning_kd.export`) against eager PyTorch, on a fixed number of threads.

The networks are built from the shipped configs' model options (sizes of the papers / official code) with the
input shapes of the data those configs read; weights are fresh (speed does not depend on them; VLSG gets random
k-means centres). Writes ``benchmarks/results/export_latency.json``::

    OMP_NUM_THREADS=2 python benchmarks/export_bench.py [--threads 2] [--out FILE]

With ``--variants`` (``--cases corrkd_student``): bf16, int8 and ``torch.compile`` variants against eager fp32,
written to ``benchmarks/results/export_variants.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_kd.cli import resolve_config  # noqa: E402
from lightning_kd.export import ExportWrapper, export_module, wrap  # noqa: E402

GOAL = 5000.0  # samples/s on 2 cores (the target for every distilled student)
MOSI = {"text": (50, 768), "audio": (50, 5), "vision": (50, 20)}  # MMSA aligned MOSI: BERT text features
MOSI_MULT = {"text": (50, 300), "audio": (50, 5), "vision": (50, 20)}  # MulT-style MOSI (GloVe text)
#: name -> (config, input shapes (steps, features) or (features,), whether it is a distilled student)
CASES: dict[str, tuple[str, dict[str, tuple[int, ...]], bool]] = {
    # DMD distils between the modality branches of its one network: no separate student to ship
    "dmd": ("configs/dmd/mosi_aligned.yaml", MOSI, False),
    "fusion": ("configs/fusion/mosi_aligned.yaml", MOSI, False),
    "corrkd_student": ("configs/corrkd/mosi_student.yaml", MOSI_MULT, True),
    "corrkd_student_compact": ("configs/corrkd/mosi_student_compact.yaml", MOSI_MULT, True),
    "cdgkd_student": ("configs/cdgkd/deap_student.yaml", {"face": (5, 48)}, True),
    "mt_pkdot_student": ("configs/mt_pkdot/biovid_5_student.yaml", {"video": (16, 48)}, True),
    "vlsg": ("configs/vlsg/mfeat.yaml", {f"view_{i}": (d,) for i, d in enumerate((216, 76, 64, 6, 240, 47))}, True),
}


def build(name: str) -> ExportWrapper:
    """The case's module (config's model options, fresh weights) wrapped for export."""
    config, shapes, _ = CASES[name]
    cfg = resolve_config(["fit", "-c", str(ROOT / config)])
    model = cfg["model"]
    module_name, _, cls_name = model["class_path"].rpartition(".")
    cls = getattr(__import__(module_name, fromlist=[cls_name]), cls_name)
    init = model["init_args"].as_dict() if hasattr(model["init_args"], "as_dict") else dict(model["init_args"])
    init["feature_dims"] = {k: s[-1] for k, s in shapes.items()}
    if "seq_lens" in init or name != "vlsg":
        init["seq_lens"] = {k: s[0] for k, s in shapes.items() if len(s) == 2}
    if name == "vlsg":
        init["num_clusters"] = init.get("num_clusters") or 10
    torch.manual_seed(0)
    module = cls(**init)
    if name == "vlsg" and module.hparams.cluster_on != "labels":
        module.cluster_centers.copy_(torch.randn_like(module.cluster_centers))
        module.centers_fitted.fill_(True)
    return wrap(module.eval())


def inputs(wrapper: ExportWrapper, shapes: dict[str, tuple[int, ...]], batch: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(batch)
    feats = [torch.randn(batch, *shapes[n], generator=g) for n in wrapper.signature.inputs]
    masks = [torch.ones(batch, shapes[n][0], dtype=torch.bool) for n in wrapper.signature.masks]
    return (*feats, *masks)


def timed(fn: Callable[[], object], min_runs: int, budget_s: float) -> float:
    """Median seconds of ``fn`` (2 warm-up calls, then at least ``min_runs`` calls or ``budget_s`` seconds)."""
    for _ in range(2):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 1000):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ort_session(path: Path, threads: int):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads, operators run one after another."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def runners(wrapper: ExportWrapper, files: dict[str, Path], threads: int) -> dict[str, Callable]:
    """runtime -> fn(inputs) for eager PyTorch, TorchScript and ONNX Runtime."""
    session = ort_session(files["onnx"], threads)
    names = wrapper.signature.names
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        script = torch.jit.load(str(files["torchscript"]))

    def eager(x):
        with torch.inference_mode():
            return wrapper(*x)

    def torchscript(x):
        with torch.inference_mode():
            return script(*x)

    def onnxruntime(x):
        return session.run(None, {n: t.numpy() for n, t in zip(names, x)})

    return {"pytorch_eager": eager, "torchscript": torchscript, "onnxruntime": onnxruntime}


def variant_runners(wrapper: ExportWrapper, example: tuple[torch.Tensor, ...], big: tuple[torch.Tensor, ...],
                    tmp: Path, threads: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Lower-precision and compiled ways to run one network on ``big``: variant -> fn() returning its output.

    eager fp32 (the reference), the whole network in bfloat16, bf16 autocast, ONNX Runtime fp32 and with int8
    dynamic quantization of its MatMul weights (``onnxruntime.quantization.quantize_dynamic``), and
    ``torch.compile`` (Inductor) of the eval network.
    """
    import copy

    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_file = export_module(wrapper, example, "onnx", tmp / "variant.onnx")
    int8_file = tmp / "variant_int8.onnx"
    quantize_dynamic(str(onnx_file), str(int8_file), weight_type=QuantType.QInt8)
    sessions = {"onnxruntime": ort_session(onnx_file, threads), "onnxruntime_int8": ort_session(int8_file, threads)}
    feed = {n: t.numpy() for n, t in zip(wrapper.signature.names, big)}
    bf16 = copy.deepcopy(wrapper).to(torch.bfloat16)
    big_bf16 = tuple(t.to(torch.bfloat16) if t.is_floating_point() else t for t in big)
    compiled = torch.compile(wrapper, dynamic=False)

    def eager(net=wrapper, x=big):
        with torch.inference_mode():
            return net(*x).float()

    def autocast():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return wrapper(*big).float()

    def run_compiled():
        with torch.no_grad():
            return compiled(*big)

    def session(name):
        return lambda: torch.from_numpy(sessions[name].run(None, feed)[0])

    return {"pytorch_eager": eager, "pytorch_eager_bf16_weights": lambda: eager(bf16, big_bf16),
            "pytorch_bf16_autocast": autocast, "onnxruntime": session("onnxruntime"),
            "onnxruntime_int8_dynamic": session("onnxruntime_int8"), "torch_compile": run_compiled}


def variants(args: argparse.Namespace) -> list[dict]:
    """Throughput (batch 256) of each variant, ``--repeats`` rounds in alternating order; max |output - eager fp32|."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            wrapper = build(name)
            shapes = CASES[name][1]
            big = inputs(wrapper, shapes, 256)
            t0 = time.perf_counter()
            fns = variant_runners(wrapper, inputs(wrapper, shapes, 2), big, Path(tmp), args.threads)
            reference = fns["pytorch_eager"]()
            diffs, first_call_s = {}, {}
            for variant, fn in fns.items():  # the first call compiles torch.compile's graph
                t1 = time.perf_counter()
                diffs[variant] = float((fn() - reference).abs().max())
                first_call_s[variant] = time.perf_counter() - t1
            for round_ in range(args.repeats):
                for variant, fn in fns.items():
                    thr = 256 / timed(fn, 3, 3.0)
                    rows.append({"model": name, "config": CASES[name][0], "variant": variant, "round": round_,
                                 "throughput_b256": round(thr, 1), "max_abs_diff_vs_eager_fp32": diffs[variant]})
                    print(f"{name:18s} {variant:26s} round {round_} {thr:10.1f} /s  max diff {diffs[variant]:.2e}",
                          flush=True)
            rows.append({"model": name, "torch_compile_first_call_s": round(first_call_s["torch_compile"], 1),
                         "setup_s": round(time.perf_counter() - t0, 1)})
    return rows


def write_results(out: Path, doc: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="default: benchmarks/results/export_latency.json "
                        "(export_variants.json with --variants)")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--variants", action="store_true",
                        help="instead: bf16, int8 (ONNX Runtime dynamic quantization) and torch.compile variants of "
                             "each case, throughput at batch 256 against eager fp32")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the variants, alternating")
    args = parser.parse_args()
    sys_argv = list(sys.argv)
    sys.argv = sys.argv[:1]  # resolve_config passes its own arguments to the CLI
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    if args.variants:
        out = Path(args.out or ROOT / "benchmarks/results/export_variants.json")
        doc = {"threads": args.threads, "batch": 256, "cpu": platform.processor() or platform.machine(),
               "torch": torch.__version__, "onnxruntime": ort.__version__, "loadavg_start": os.getloadavg(),
               "command": "python benchmarks/export_bench.py " + " ".join(sys_argv[1:]),
               "note": "fresh weights, config model options; median times; rounds alternate the variants",
               "rows": variants(args)}
        return write_results(out, doc)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            wrapper = build(name)
            shapes = CASES[name][1]
            example = inputs(wrapper, shapes, 2)
            files = {fmt: export_module(wrapper, example, fmt, Path(tmp) / f"{name}.{fmt}")
                     for fmt in ("onnx", "torchscript")}
            params = sum(p.numel() for p in wrapper.module.parameters())
            for runtime, fn in runners(wrapper, files, args.threads).items():
                one, big = inputs(wrapper, shapes, 1), inputs(wrapper, shapes, 256)
                lat = timed(lambda f=fn, x=one: f(x), 20, 2.0)
                thr = timed(lambda f=fn, x=big: f(x), 3, 3.0)
                row = {"model": name, "config": CASES[name][0], "student": CASES[name][2], "params": params,
                       "runtime": runtime, "latency_ms_b1": round(lat * 1e3, 3),
                       "throughput_b256": round(256 / thr, 1), "meets_goal": 256 / thr >= GOAL}
                rows.append(row)
                print(f"{name:18s} {runtime:14s} {row['latency_ms_b1']:9.3f} ms  {row['throughput_b256']:10.1f} /s",
                      flush=True)
    doc = {"threads": args.threads, "batch_latency": 1, "batch_throughput": 256, "goal_samples_per_s": GOAL,
           "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
           "torch": torch.__version__, "onnxruntime": ort.__version__,
           "note": "fresh weights, config model options, input shapes of the configs' data; median times; a shared "
                   "2-core machine (other jobs may have run)", "rows": rows}
    write_results(Path(args.out or ROOT / "benchmarks/results/export_latency.json"), doc)


if __name__ == "__main__":
    main()
