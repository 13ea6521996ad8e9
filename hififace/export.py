"""ONNX export: the generator with the identity vector as an input, and the identity extractor.

    hififace export-onnx models/hififace-256 hififace-256.onnx --dynamic-batch --identity hififace-256-identity.onnx

Two models, because tools such as FaceFusion compute the source's identity once and feed it to the
swapper for every frame (S = the model's image size, RGB float32 in [0, 1], NCHW):

- generator (`export_onnx`): inputs `target` (B, 3, S, S) and `v_sid` (B, 769); outputs `image` (I_r),
  `image_low` (I_low), `mask` (M_r), `mask_low` (M_low), `image_out` (I_out), as `HifiFace.generate`.
- identity (`export_identity_onnx`): inputs `source` and `target` (B, 3, S, S); output `v_sid` (B, 769)
  = [source 3DMM shape | target 3DMM expression, texture, pose, light | source ArcFace], the plain
  swap (`HifiFace.identity(source, target)`, strengths 1). Other strengths stay in PyTorch.

Both use `torch.onnx.export(..., dynamo=False)`: the TorchScript exporter, because the newer
`dynamo=True` exporter needs `onnxscript`, which this project does not depend on. `check_onnx`
runs an exported file with onnxruntime (optional dependency) and compares it with PyTorch.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from hififace.models.generator import HifiFace

GENERATOR_INPUTS = ("target", "v_sid")
GENERATOR_OUTPUTS = ("image", "image_low", "mask", "mask_low", "image_out")
IDENTITY_INPUTS = ("source", "target")
IDENTITY_OUTPUTS = ("v_sid",)
DEFAULT_OPSET = 17


class GeneratorGraph(nn.Module):
    """`HifiFace.generate` with positional tensors in and a tuple out, in `GENERATOR_OUTPUTS` order."""

    def __init__(self, model: HifiFace):
        super().__init__()
        self.model = model

    def forward(self, target: torch.Tensor, v_sid: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model.generate(target, v_sid)
        return tuple(out[name] for name in GENERATOR_OUTPUTS)


class IdentityGraph(nn.Module):
    """v_sid (B, 769) of (source, target) pairs: the frozen F_3d and F_id of `HifiFace.identity`."""

    def __init__(self, model: HifiFace):
        super().__init__()
        self.identity = model.identity

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.identity(source, target)


def export_onnx(
    model: HifiFace, path: str | os.PathLike, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False
) -> Path:
    """Write the generator (encoder, decoder, SFF) as ONNX with `target` and `v_sid` as inputs.

    Args:
        model (HifiFace): an fp32 model, not compiled (channels-last is fine), on any device.
        path (str or Path): the .onnx file to write.
        opset (int, 17): ONNX opset version.
        dynamic_batch (bool, False): a symbolic batch size B; otherwise the batch is fixed to 1.
    """
    size = model.image_size
    batch = 2 if dynamic_batch else 1  # an example batch of 2 keeps B from being folded into constants
    example = (torch.rand(batch, 3, size, size), torch.randn(batch, model.identity.dim))
    return _export(
        GeneratorGraph(model), example, path, GENERATOR_INPUTS, GENERATOR_OUTPUTS, opset, dynamic_batch
    )


def export_identity_onnx(
    model: HifiFace, path: str | os.PathLike, opset: int = DEFAULT_OPSET, dynamic_batch: bool = False
) -> Path:
    """Write the identity extractor as ONNX: (`source`, `target`) -> `v_sid`; arguments as `export_onnx`."""
    size = model.image_size
    batch = 2 if dynamic_batch else 1
    example = (torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size))
    return _export(
        IdentityGraph(model), example, path, IDENTITY_INPUTS, IDENTITY_OUTPUTS, opset, dynamic_batch
    )


def _export(
    graph: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: str | os.PathLike,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    opset: int,
    dynamic_batch: bool,
) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next(graph.parameters()).device
    example = tuple(x.to(device) for x in example)
    dynamic_axes = {name: {0: "batch"} for name in inputs + outputs} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        # Expected and harmless: the TorchScript exporter is deprecated in favour of dynamo=True;
        # instance norm (no running statistics) is exported in "training mode", i.e. with input
        # statistics; the priors' input-shape checks are constants for a fixed image size (the
        # tests run the files at another batch size than the example's).
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*'instance_norm' is set to train=True.*")
        torch.onnx.export(
            graph,
            example,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic_axes,
        )
    return path


def check_onnx(model: HifiFace, path: str | os.PathLike, batch: int = 1, seed: int = 0) -> dict[str, float]:
    """Run an exported generator or identity file with onnxruntime and compare it with PyTorch (fp32).

    The inputs are seeded random images and, for the generator, the v_sid of those images (so the
    decoder sees a realistic identity vector). Returns the maximum absolute difference per output.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = tuple(i.name for i in session.get_inputs())
    size = model.image_size
    g = torch.Generator().manual_seed(seed)
    source, target = (torch.rand(batch, 3, size, size, generator=g) for _ in range(2))
    device = next(model.parameters()).device
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        v_sid = model.identity(source.to(device), target.to(device)).float()
        if names == GENERATOR_INPUTS:
            feeds = {"target": target, "v_sid": v_sid.cpu()}
            out = model.generate(target.to(device), v_sid)
            expected = [out[name] for name in GENERATOR_OUTPUTS]
        elif names == IDENTITY_INPUTS:
            feeds = {"source": source, "target": target}
            expected = [v_sid]
        else:
            raise ValueError(f"{path}: inputs {names} are neither a hififace generator nor identity export")
    produced = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    outputs = tuple(o.name for o in session.get_outputs())
    return {
        name: float((torch.from_numpy(p) - e.float().cpu()).abs().max())
        for name, p, e in zip(outputs, produced, expected, strict=True)
    }
