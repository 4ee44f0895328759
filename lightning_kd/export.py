"""Export the inference network of a trained method to ONNX or TorchScript (``lightning-kd export``).

    lightning-kd export -c <run>/config.yaml --ckpt_path <ckpt> --format onnx --out student.onnx

The config and checkpoint are read as ``lightning-kd test`` reads them (:func:`lightning_kd.cli.build_only`, which
the CLI passes in: the data is linked into the model, ``--ckpt_path`` is read with ``weights_only=True`` and must
hold the configured method), then the weights are loaded and the module is put in eval mode. :class:`ExportWrapper` takes positional
tensors and calls the method's own eval path (nothing of the forward pass is rewritten here); the graph is traced
on two samples of the data's test split, with a dynamic batch axis.

Inputs (in this order; names of the data contract, :mod:`lightning_kd.data.batch`) and outputs per method:

=============  ============================================================  ==================================
method         inputs                                                        output
=============  ============================================================  ==================================
DMD, fusion    ``text`` (or ``text_bert``), ``audio``, ``vision``            ``score (B,)``
CorrKD         ``text``, ``audio``, ``vision``, then ``text_mask``,          ``logits (B, tasks, 2)``
               ``audio_mask``, ``vision_mask`` (bool ``(B, L)``)
CDGKD          the role's inputs (student: ``face``)                         ``logits (B, 2)``
MT-PKDOT       the role's inputs (student: ``video``), then a ``_mask``      ``logits (B, C)`` or
               for each frame sequence (``video_mask``)                      ``valence_arousal (B, 2)``
VLSG           ``view_0``, ``view_1``, ...                                   ``cluster (B,)`` int64: the
                                                                             nearest stored k-means centre
                                                                             (argmax of the label heads with
                                                                             ``cluster_on: labels``)
k-means        ``view_0``, ``view_1``, ...                                   ``cluster (B,)`` int64: the
                                                                             nearest stored centre
=============  ============================================================  ==================================

A mask is read only where the method's eval path reads it; an all-False mask is a missing modality (DMD and the
fusion baseline read no mask: the missing-modality protocol gives them the removed modality as zeros, as the
data does). An all-True mask equals giving no mask. ONNX uses the TorchScript-based exporter
(``torch.onnx.export(dynamo=False)``, opset 17): it needs only ``onnx`` and is ten times faster here than the
``torch.export``-based one (which needs ``onnxscript``) and gives the same graphs' results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from lightning_kd.checkpoint import CKPT_FIX, CheckpointMismatchError, ConfigError, OutputPathError, load_checkpoint
from lightning_kd.data.batch import Batch
from lightning_kd.io import atomic_write_binary

__all__ = ["FORMATS", "OPSET", "ExportResult", "ExportWrapper", "Signature", "batch_inputs", "example_inputs",
           "export_cli", "export_module", "export_run", "load_for_export", "require_onnx", "run_exported", "wrap"]

FORMATS = ("onnx", "torchscript")
OPSET = 17
#: the data contract's inputs in the order exported graphs take them; other names (``view_0``, ...) follow, sorted
INPUT_ORDER = ("text", "text_bert", "audio", "vision", "face", "eeg", "video", "bio")


@dataclass(frozen=True)
class Signature:
    """What an exported graph takes and gives.

    Attributes:
        inputs: feature inputs, in order.
        masks: inputs whose bool ``(B, L)`` mask the graph reads (as ``<name>_mask``, after the features).
        output: the output's name.
    """

    inputs: tuple[str, ...]
    masks: tuple[str, ...]
    output: str

    @property
    def names(self) -> tuple[str, ...]:
        """Every input name, in the graph's order."""
        return (*self.inputs, *(f"{m}_mask" for m in self.masks))


Predict = Callable[[nn.Module, Batch], Tensor]


class ExportWrapper(nn.Module):
    """``forward(*features, *masks)`` -> the method's prediction through its own eval path (see the module
    docstring for each method's order).

    The LightningModule is held as a plain attribute, not as a submodule: its children (the networks) are
    registered here instead, so tracing sees every parameter but never reads the LightningModule's properties
    (``trainer``, ``teacher``, ... raise outside a fit). Buffers of the LightningModule itself (VLSG's k-means
    centres) are traced as constants."""

    def __init__(self, module: nn.Module, signature: Signature, predict: Predict) -> None:
        super().__init__()
        object.__setattr__(self, "_method", module)
        self.parts = nn.ModuleDict({name: child for name, child in module.named_children()
                                    if next(child.parameters(), None) is not None
                                    or next(child.buffers(), None) is not None})
        self.signature, self._predict = signature, predict

    @property
    def module(self) -> nn.Module:
        """The wrapped LightningModule."""
        return self._method

    def forward(self, *tensors: Tensor) -> Tensor:
        n = len(self.signature.inputs)
        batch = Batch(inputs=dict(zip(self.signature.inputs, tensors[:n])),
                      masks=dict(zip(self.signature.masks, tensors[n:])))
        return self._predict(self._method, batch)


def _ordered(names: Sequence[str]) -> tuple[str, ...]:
    rank = {n: i for i, n in enumerate(INPUT_ORDER)}
    return tuple(sorted(names, key=lambda n: (rank.get(n, len(rank)), n)))


# -- one entry per method: its signature and its eval path ----------------------------------------------------
def _dmd(m: Any) -> tuple[Signature, Predict]:
    return Signature((m.net.text_key, "audio", "vision"), (), "score"), lambda mod, b: mod.predict_scores(b)


def _fusion(m: Any) -> tuple[Signature, Predict]:
    text = "text_bert" if m.net.text_encoder is not None else "text"
    return Signature((text, "audio", "vision"), (), "score"), lambda mod, b: mod.predict_scores(b)


def _corrkd(m: Any) -> tuple[Signature, Predict]:
    names = _ordered(m.net.inputs)
    return Signature(names, names, "logits"), lambda mod, b: mod(b).logits


def _cdgkd(m: Any) -> tuple[Signature, Predict]:
    return Signature(tuple(m.net.inputs), (), "logits"), lambda mod, b: mod.class_logits(b)


def _mt_pkdot(m: Any) -> tuple[Signature, Predict]:
    from lightning_kd.methods.mt_pkdot.model import SequenceEmbedding

    if m.role == "hallucination":
        raise ConfigError("the MT-PKDOT hallucination stage predicts no target (it maps visual to privileged "
                          "embeddings). Fix: export the student (configs/mt_pkdot/*_5_student.yaml) or another stage.")
    n = m.net.options
    by_input = {n.visual_input: "visual", n.privileged_input: "privileged"}
    names = tuple(m.net.inputs)
    masks = tuple(x for x in names if isinstance(m.net.encoders[by_input[x]], SequenceEmbedding))
    output = "logits" if m.loss_options.task == "ce" else "valence_arousal"
    return Signature(names, masks, output), lambda mod, b: mod.predictions(b)


def _vlsg(m: Any) -> tuple[Signature, Predict]:
    if m.net is None:
        raise ConfigError("VLSG has no network yet (num_clusters is null and no checkpoint was loaded). Fix: pass "
                          "--ckpt_path.")
    if m.hparams.cluster_on != "labels" and not bool(m.centers_fitted):
        raise CheckpointMismatchError("the VLSG checkpoint holds no fitted k-means centres (they are fitted at the "
                                      "first validation epoch end). Fix: export a checkpoint saved after a validation "
                                      "epoch (checkpoints/last.ckpt of a finished `lightning-kd fit`).")
    return Signature(tuple(m.net.views), (), "cluster"), lambda mod, b: mod(b)


def _kmeans(m: Any) -> tuple[Signature, Predict]:
    if not bool(getattr(m, "centers_fitted", False)):
        raise CheckpointMismatchError("the k-means checkpoint holds no fitted centres. Fix: export the checkpoint of "
                                      "a finished `lightning-kd fit` (checkpoints/last.ckpt).")
    return Signature(tuple(m.views), (), "cluster"), lambda mod, b: mod(b)


_METHODS: dict[str, Callable[[Any], tuple[Signature, Predict]]] = {
    "lightning_kd.methods.dmd.module.DMD": _dmd,
    "lightning_kd.methods.fusion.module.FusionBaseline": _fusion,
    "lightning_kd.methods.corrkd.module.CorrKD": _corrkd,
    "lightning_kd.methods.cdgkd.module.CDGKD": _cdgkd,
    "lightning_kd.methods.mt_pkdot.module.MTPKDOT": _mt_pkdot,
    "lightning_kd.methods.vlsg.module.VLSG": _vlsg,
    "lightning_kd.methods.kmeans.module.KMeansBaseline": _kmeans,
}


def wrap(module: nn.Module) -> ExportWrapper:
    """The :class:`ExportWrapper` of a method's LightningModule, in eval mode (refuses a method without one)."""
    name = f"{type(module).__module__}.{type(module).__qualname__}"
    if name not in _METHODS:
        raise ConfigError(f"{name} has no exporter; `lightning-kd export` supports {', '.join(sorted(_METHODS))}. "
                          "Fix: export a run of one of these methods.")
    signature, predict = _METHODS[name](module)
    module.eval()
    return ExportWrapper(module, signature, predict).eval()


# -- example inputs --------------------------------------------------------------------------------------------
def _step_axis(name: str) -> int:
    from lightning_kd.data.missing import default_step_axis

    return default_step_axis(name)


def batch_inputs(batch: Batch, signature: Signature) -> tuple[Tensor, ...]:
    """The graph's positional inputs from a :class:`Batch` (a mask the batch lacks is all-True)."""
    feats = [batch.inputs[n] for n in signature.inputs]
    masks = []
    for name in signature.masks:
        x = batch.inputs[name]
        mask = batch.masks.get(name)
        masks.append(mask.bool() if mask is not None else
                     torch.ones(x.shape[0], x.shape[_step_axis(name)], dtype=torch.bool, device=x.device))
    return (*feats, *masks)


def example_inputs(datamodule: Any, signature: Signature, batch_size: int = 2) -> tuple[Tensor, ...]:
    """``batch_size`` samples of the first test batch (repeated when it holds fewer), as the graph's inputs."""
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    tensors = batch_inputs(batch, signature)
    reps = -(-batch_size // tensors[0].shape[0])
    return tuple(torch.cat([t] * reps)[:batch_size].contiguous() for t in tensors)


# -- export ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _tracing() -> Iterator[None]:
    """No fused Transformer fast path (an op ONNX lacks; the traced graph runs the reference path) and none of
    torch's notices that tracing, TorchScript files and the TorchScript-based ONNX exporter are deprecated (torch
    2.14 still runs them; the project pins torch in .ci/constraints.in)."""
    from torch.jit import TracerWarning

    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TracerWarning)
            warnings.filterwarnings("ignore", message=r".*(legacy TorchScript-based ONNX export|torch\.jit\.trace"
                                                      r"|The feature will be removed)", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.(trace|save|load)", category=FutureWarning)
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)


def require_onnx() -> None:
    """:class:`ConfigError` (one line with the fix) unless ``onnx`` and ``onnxruntime`` can be imported."""
    import importlib.util

    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"ONNX export needs {' and '.join(missing)} (the `export` extra). Fix: pip install -c "
                          "constraints.txt -e \".[export]\" (or `pip install onnx onnxruntime`), or use --format "
                          "torchscript.")


def _onnx_bytes(wrapper: ExportWrapper, example: tuple[Tensor, ...], opset: int) -> bytes:
    require_onnx()
    sig = wrapper.signature
    buf = io.BytesIO()
    axes = {n: {0: "batch"} for n in (*sig.names, sig.output)}
    with _tracing():
        torch.onnx.export(wrapper, example, buf, dynamo=False, input_names=list(sig.names), output_names=[sig.output],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True)
    import onnx

    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    return buf.getvalue()


def _torchscript_bytes(wrapper: ExportWrapper, example: tuple[Tensor, ...]) -> bytes:
    buf = io.BytesIO()
    with _tracing(), torch.no_grad():
        torch.jit.save(torch.jit.trace(wrapper, example, check_trace=False), buf)
    return buf.getvalue()


def check_out(out: str | Path) -> Path:
    """``out`` as a Path, or :class:`OutputPathError` when no file can be written there (nothing is created)."""
    from lightning_kd.callbacks.run_dir import output_dir_problem

    path = Path(out).expanduser()
    problem = f"{path} is a directory" if path.is_dir() else output_dir_problem(path.parent)
    if problem:
        raise OutputPathError(f"`--out` {path} cannot be written: {problem}. Fix: set `--out` to a file path in a "
                              "writable directory.")
    return path


def export_module(wrapper: ExportWrapper, example: tuple[Tensor, ...], fmt: str, out: str | Path,
                  opset: int = OPSET) -> Path:
    """Trace ``wrapper`` on ``example`` and write the ``fmt`` (``onnx`` / ``torchscript``) file atomically."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}. Fix: use one of {', '.join(FORMATS)}.")
    path = check_out(out)
    data = _onnx_bytes(wrapper, example, opset) if fmt == "onnx" else _torchscript_bytes(wrapper, example)
    try:
        return atomic_write_binary(path, lambda f: f.write(data))
    except OSError as e:
        raise OutputPathError(f"`--out` {path} cannot be written ({e.strerror or e}). Fix: set `--out` to a file "
                              "path in a writable directory.") from e


def run_exported(path: str | Path, fmt: str, inputs: Sequence[Tensor], names: Sequence[str] | None = None) -> Tensor:
    """Run an exported file on ``inputs`` (ONNX Runtime on the CPU, or the TorchScript module)."""
    if fmt == "onnx":
        require_onnx()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = names or [i.name for i in session.get_inputs()]
        out = session.run(None, {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)})[0]
        return torch.from_numpy(out)
    with _tracing(), torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(*inputs)


# -- from a run's config and checkpoint --------------------------------------------------------------------------
def load_for_export(config: str | Path, ckpt_path: str | Path, build_only: Callable[[list[str]], Any],
                    overrides: Sequence[str] = ()) -> tuple[Any, Any]:
    """The configured method with the checkpoint's weights (eval mode) and its datamodule, built as
    ``lightning-kd test -c CONFIG --ckpt_path CKPT`` builds them (on the CPU, without a logger, running nothing).

    ``build_only``: :func:`lightning_kd.cli.build_only` (passed in by the CLI, so this module does not import it)."""
    if not Path(config).is_file():
        raise ConfigError(f"config {config} not found (no such file). Fix: pass a run's config.yaml "
                          "(runs/<name>/version_N/config.yaml) or a config under configs/.")
    args = ["test", "-c", str(config), "--ckpt_path", str(ckpt_path), "--trainer.logger=false",
            "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.strategy=auto", *overrides]
    cli = build_only(args)
    model = cli.model
    checkpoint = load_checkpoint(ckpt_path, fix=CKPT_FIX)
    model.on_load_checkpoint(checkpoint)  # the method tag; VLSG builds its network for the stored centres
    model.load_state_dict(checkpoint["state_dict"], strict=model.strict_loading)
    return model.cpu().eval(), cli.datamodule


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote: the file, its signature and the largest difference of the exported graph's
    output from the eval path on the example inputs."""

    path: Path
    signature: Signature
    max_abs_diff: float


def export_run(config: str | Path, ckpt_path: str | Path, fmt: str, out: str | Path,
               build_only: Callable[[list[str]], Any], overrides: Sequence[str] = (), opset: int = OPSET
               ) -> ExportResult:
    """Export a trained run (see the module docstring) and check the file against the eval path on the example;
    ``build_only``: :func:`lightning_kd.cli.build_only`."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}. Fix: use one of {', '.join(FORMATS)}.")
    check_out(out)
    if fmt == "onnx":
        require_onnx()
    model, datamodule = load_for_export(config, ckpt_path, build_only, overrides)
    wrapper = wrap(model)
    example = example_inputs(datamodule, wrapper.signature)
    path = export_module(wrapper, example, fmt, out, opset)
    with torch.no_grad():
        expected = wrapper(*example)
    got = run_exported(path, fmt, example, wrapper.signature.names)
    diff = float((got.double() - expected.double()).abs().max()) if expected.numel() else 0.0
    return ExportResult(path, wrapper.signature, diff)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"lightning-kd: error: {message} (see `lightning-kd export --help`)\n")
        sys.exit(2)


def export_cli(argv: Sequence[str], build_only: Callable[[list[str]], Any]) -> ExportResult:
    """``lightning-kd export -c CONFIG --ckpt_path CKPT --format onnx|torchscript --out FILE [--key value ...]``;
    ``build_only``: :func:`lightning_kd.cli.build_only`."""
    parser = _Parser(prog="lightning-kd export", description=(
        "Export the inference network of a trained run (DMD, fusion, CorrKD, CDGKD, MT-PKDOT, VLSG, k-means) to ONNX or "
        "TorchScript with a dynamic batch axis; inputs are named as in the data contract (text, audio, vision, "
        "<name>_mask, face, video, view_0, ...). The config and checkpoint are read as `lightning-kd test` reads "
        "them (the data must be readable: it gives the input shapes). Other --key value options override the "
        "config, e.g. --data.init_args.path."))
    parser.add_argument("-c", "--config", required=True, help="the run's config.yaml (or a config under configs/)")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `lightning-kd fit`")
    parser.add_argument("--format", required=True, choices=FORMATS, help="onnx (ONNX Runtime) or torchscript")
    parser.add_argument("--out", required=True, help="the file to write (written atomically)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    args, overrides = parser.parse_known_args(list(argv))
    result = export_run(args.config, args.ckpt_path, args.format, args.out, build_only, overrides, args.opset)
    sig = result.signature
    print(f"lightning-kd export: wrote {result.path} ({args.format}; inputs {', '.join(sig.names)} -> {sig.output}, "
          f"dynamic batch); max |exported - PyTorch| on 2 test samples: {result.max_abs_diff:.2e}", flush=True)
    return result
