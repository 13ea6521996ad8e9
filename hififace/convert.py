"""Checkpoints of other projects -> hififace safetensors folders.

Each source has one `KeyTable` that says how its tensor names become ours (renames, tensors to
drop, tensors it may lack); the loaders have no per-source branches. A conversion reads the file
safely (`torch.load(..., weights_only=True)` or safetensors), builds the hififace model, loads it
strictly (anything missing, extra or of the wrong shape is named), and writes `config.json`,
`model.safetensors` and a model card that says where the weights came from:

    convert_hififace_pytorch  HiFiFace-pytorch `generator_<iter>.pth` (generator + priors) -> HifiFace
    convert_maum_ai    maum-ai/hififace `hififace_opensouce_299999.ckpt` (Lightning)  -> HifiFace(sff="maum-ai")
    convert_arcface    insightface arcface_torch `backbone.pth` (IResNet-18/34/50/100/200) -> ArcFace
    convert_deep3d     Deep3DFaceRecon `epoch_20.pth` ('net_recon')                         -> Face3DRegressor
    convert_bfm        Deep3DFaceRecon `BFM_model_front.mat` (68 landmarks)                 -> BFMLandmarks
    convert_bisenet    face-parsing.PyTorch `79999_iter.pth`                                -> FaceParser

Nothing is downloaded: every source is a file you already have. maum-ai's Lightning checkpoint
pickles Lightning and OmegaConf objects, which `weights_only=True` refuses; it is read with the
restricted unpickler of `hififace.checkpoints`, which runs nothing the file names.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hififace.checkpoints import CorruptCheckpoint, RefusedPickle, load_tensors, read_zip_checkpoint
from hififace.hub import CheckpointError, card_metadata, load_state_dict_strict
from hififace.models.generator import HifiFace
from hififace.priors.arcface import IRESNET_LAYERS, ArcFace
from hififace.priors.face3d import BFMLandmarks, Face3DRegressor
from hififace.priors.parsing import FaceParser

logger = logging.getLogger(__name__)

PathLike = str | Path


@dataclass(frozen=True)
class KeyTable:
    """How the tensor names of one source become the names of a hififace model.

    Args:
        renames (tuple of (pattern, replacement)): regular-expression substitutions applied in
            order to every source name.
        drop (tuple of patterns): source tensors (after renaming) that are not part of the model,
            e.g. training-only heads; they are discarded and logged.
        defaults (tuple of patterns): model tensors the source may lack; they keep the value of the
            freshly built model (e.g. `num_batches_tracked`, which eval-mode batch norm never reads).
    """

    renames: tuple[tuple[str, str], ...] = ()
    drop: tuple[str, ...] = ()
    defaults: tuple[str, ...] = ()


_NO_DDP_PREFIX = (r"^module\.", "")  # checkpoints saved from a DistributedDataParallel wrapper
_BN_COUNTER = r"\.num_batches_tracked$"  # older torch versions and some exports do not save it

ARCFACE_KEYS = KeyTable(renames=(_NO_DDP_PREFIX,), defaults=(_BN_COUNTER,))
DEEP3D_KEYS = KeyTable(renames=(_NO_DDP_PREFIX,), defaults=(_BN_COUNTER,))
BISENET_KEYS = KeyTable(renames=(_NO_DDP_PREFIX,), defaults=(_BN_COUNTER,))

# HiFiFace-pytorch (MIT) names -> ours. Its ResBlocks are Sequentials (IN, LReLU, conv, [resample],
# IN, LReLU, conv), so conv indices 2 and 5/6 are our conv1/conv2; AdaIN std/mean are scale/shift.
HIFIFACE_PYTORCH_KEYS = KeyTable(
    renames=(
        _NO_DDP_PREFIX,
        (r"^id_extractor\.f_3d\.", "identity.face3d."),
        (r"^id_extractor\.f_id\.", "identity.arcface."),
        (r"^encoder\.conv_first\.", "encoder.conv_in."),
        (r"^sff_module\.", "sff."),
        (r"\.block_list\.", ".blocks."),
        (r"\.main_path\.2\.", ".conv1."),
        (r"\.main_path\.[56]\.", ".conv2."),
        (r"\.main_path1\.1\.", ".conv1."),
        (r"\.main_path2\.1\.", ".conv2."),
        (r"\.side_path\.0\.", ".skip."),
        (r"\.std_style_fc\.", ".scale."),
        (r"\.mean_style_fc\.", ".shift."),
        (r"^sff\.low_mask_predict\.0\.", "sff.mask_low_head."),
        (r"^sff\.z_fuse_block_1\.", "sff.fuse_blocks.0."),
        (r"^sff\.z_fuse_block_2\.", "sff.fuse_blocks.1."),
        (r"^sff\.i_low_block\.1\.", "sff.image_low_head."),
        (r"^sff\.f_up\.net\.", "sff.upsample."),
        (r"^sff\.f_up\.i_r_net\.1\.", "sff.image_head."),
        (r"^sff\.f_up\.m_r_net\.0\.", "sff.mask_head."),
    ),
    defaults=(_BN_COUNTER,),
)

# maum-ai/hififace (BSD-3) names -> ours: the HiFiFace-pytorch renames for the shared encoder, decoder
# and priors (same names there), and its own SFF layers: a ResBlock M_low predictor, one AdaIN
# ResBlock after the blend, four ResBlocks in F_up. Only `generator.*` is read from the file.
MAUM_AI_KEYS = KeyTable(
    renames=(
        (r"^generator\.", ""),
        *HIFIFACE_PYTORCH_KEYS.renames,
        (r"^sff\.low_mask_predict\.", "sff.mask_low_head."),
        (r"^sff\.z_fuse_block\.", "sff.fuse_blocks.0."),
    ),
    defaults=(_BN_COUNTER,),
)

# one tensor name that gives away what a (renamed) state dict is, for clearer errors
_SIGNATURES = {
    "a HiFiFace-pytorch generator": "identity.arcface.conv1.weight",
    "an arcface_torch IResNet": "layer1.0.prelu.weight",
    "a Deep3DFaceRecon regressor": "final_layers.0.weight",
    "a face-parsing.PyTorch BiSeNet": "cp.resnet.conv1.weight",
}
_KINDS = {
    HifiFace: "a HiFiFace-pytorch generator",
    ArcFace: "an arcface_torch IResNet",
    Face3DRegressor: "a Deep3DFaceRecon regressor",
    FaceParser: "a face-parsing.PyTorch BiSeNet",
}
_DEPTH_OF_LAYER3 = {blocks[2]: depth for depth, blocks in IRESNET_LAYERS.items()}


def load_checkpoint(path: PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, on the CPU.

    `.safetensors` files are read with safetensors; anything else with
    `torch.load(path, map_location="cpu", weights_only=True)` only, which refuses pickled code.

    Args:
        path (str or Path): the file.
        key (str, None): take the state dict stored under this entry of the file's dict
            (e.g. "net_recon" in Deep3DFaceRecon's `epoch_20.pth`); other entries are ignored.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable or corrupt file, refused pickle, missing `key`, or content that
            is not a flat name -> tensor mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    obj = _read_safetensors(path) if path.suffix == ".safetensors" else _read_pickle(path)
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            entries = ", ".join(map(str, obj)) if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{path} has no '{key}' entry (it has: {entries})")
        obj = obj[key]
    where = f"{path}" + (f" ['{key}']" if key else "")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where} holds a {type(obj).__name__}, not a state dict")
    if not obj:
        raise CheckpointError(f"{where} has no tensors")
    not_tensors = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        hint = " (pass key=... to take a nested state dict)" if key is None else ""
        listed = ", ".join(not_tensors[:5])
        raise CheckpointError(f"{where} is not a state dict: {listed} are not tensors{hint}")
    return {str(k): v for k, v in obj.items()}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error types, and OSError
        raise CheckpointError(f"cannot read {path} as safetensors: {error}") from error


def _read_pickle(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch words it "Unsupported global: GLOBAL x.y" or, for blocked modules such as os,
        # "unsupported GLOBAL posix.system whose module posix is blocked"
        refused = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(error), re.IGNORECASE)
        if refused:
            raise CheckpointError(
                f"{path} was refused: it pickles {refused.group(1)}, and hififace only loads "
                "tensors and plain containers (torch.load weights_only=True)"
            ) from error
        raise CheckpointError(f"cannot read {path}: not a PyTorch checkpoint, or a corrupt one") from error
    except (RuntimeError, EOFError, OSError) as error:
        reason = str(error).split(". ")[0]
        raise CheckpointError(f"cannot read {path}: corrupt or not a checkpoint ({reason})") from error


def rename_keys(state_dict: Mapping[str, torch.Tensor], table: KeyTable) -> dict[str, torch.Tensor]:
    """`state_dict` with the table's renames applied and its `drop` tensors removed."""
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        for pattern, replacement in table.renames:
            name = re.sub(pattern, replacement, name)
        if name in renamed:
            raise CheckpointError(f"two source tensors are both renamed to {name}")
        renamed[name] = tensor
    dropped = [k for k in renamed if any(re.search(p, k) for p in table.drop)]
    if dropped:
        logger.info("dropping %d source tensors that the model does not use: %s", len(dropped), dropped)
    return {k: v for k, v in renamed.items() if k not in dropped}


def guess_source(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """What kind of checkpoint the (renamed) names look like, e.g. "an arcface_torch IResNet"."""
    return next((kind for kind, name in _SIGNATURES.items() if name in state_dict), None)


def load_converted(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], table: KeyTable, source: str = ""
) -> nn.Module:
    """Load a source state dict into `model` through `table`, strictly; return the model in eval mode.

    Raises:
        CheckpointError: naming every tensor that is missing, unexpected or of the wrong shape, and
            what the checkpoint looks like when it is another kind of network.
    """
    state = rename_keys(state_dict, table)
    filled = []
    for name, value in model.state_dict().items():
        if name not in state and any(re.search(p, name) for p in table.defaults):
            state[name] = value
            filled.append(name)
    if filled:
        logger.info("%d tensors absent from the source keep their defaults: %s", len(filled), filled)
    try:
        load_state_dict_strict(model, state, source=source)
    except CheckpointError as error:
        found, expected = guess_source(state), _KINDS.get(type(model))
        if found and found != expected:
            raise CheckpointError(f"{error}; {source or 'it'} looks like {found} checkpoint") from None
        raise
    return model.eval()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_converted(
    model: nn.Module,
    out_dir: PathLike,
    src: PathLike,
    *,
    command: str,
    description: str,
    base_model: str | None = None,
    push_to_hub: str | None = None,
    private: bool | None = None,
) -> None:
    """Write `model` to `out_dir` (config.json, model.safetensors, README.md) and optionally push it.

    The model card names the source file (and its SHA-256) and the licence of the weights, in its
    YAML header and in words (`hififace.hub.WEIGHTS_LICENSES[command]`: a complete HifiFace is
    `license: other`, since its ArcFace part is insightface's, non-commercial). An older README.md in `out_dir` is replaced, since it would describe another conversion.

    Args:
        model (HubMixin model): the converted model.
        out_dir (str or Path): folder to write.
        src (str or Path): the file the weights came from.
        command (str): the `hififace convert` source name, for the card.
        description (str): what the model is and where it comes from (Markdown).
        base_model (str, None): the Hub repo the source file came from, when it came from one.
        push_to_hub (str, None): a Hub repo id to upload the folder to.
        private (bool, None): visibility of a repo that the push creates.
    """
    src, out_dir = Path(src), Path(out_dir)
    card = {
        "model_name": f"hififace {type(model).__name__}",
        "description": description,
        "weights_source": f"converted with `hififace convert {command}` from `{src.name}` "
        f"(SHA-256 {_sha256(src)})",
        "class_name": type(model).__name__,
        **card_metadata(command, base_model=base_model),
    }
    # save_pretrained writes a new folder beside out_dir and swaps it in whole (its card replaces an
    # older README.md): nothing of a previous conversion is deleted before the new files are written
    model.save_pretrained(out_dir, model_card_kwargs=card)
    if push_to_hub:
        model.push_to_hub(push_to_hub, model_card_kwargs=card, private=private)


def arcface_depth(state_dict: Mapping[str, torch.Tensor]) -> int:
    """IResNet depth of an arcface_torch state dict, from the number of blocks in layer3."""
    blocks = {m.group(1) for k in state_dict if (m := re.match(r"layer3\.(\d+)\.", k))}
    if not blocks:
        found = guess_source(state_dict)
        hint = f"; it looks like {found} checkpoint" if found else ""
        raise CheckpointError(f"cannot tell the IResNet depth: no layer3 blocks{hint}")
    if len(blocks) not in _DEPTH_OF_LAYER3:
        known = ", ".join(f"r{d}: {n}" for n, d in _DEPTH_OF_LAYER3.items())
        raise CheckpointError(f"layer3 has {len(blocks)} blocks, which no IResNet depth has ({known})")
    return _DEPTH_OF_LAYER3[len(blocks)]


def convert_arcface(
    src: PathLike, out_dir: PathLike, depth: int | None = None, push_to_hub: str | None = None
) -> ArcFace:
    """insightface arcface_torch `backbone.pth` -> `ArcFace` folder.

    Args:
        src (str or Path): the backbone state dict (`.pth` or `.safetensors`).
        out_dir (str or Path): folder to write.
        depth (int, None): IResNet depth; None infers it from layer3 (r50: 14 blocks, r100: 30).
        push_to_hub (str, None): also upload to this Hub repo id.
    """
    source = load_checkpoint(src)
    renamed = rename_keys(source, ARCFACE_KEYS)
    depth = depth or arcface_depth(renamed)
    embedding_dim = renamed["fc.weight"].shape[0] if "fc.weight" in renamed else 512
    model = load_converted(ArcFace(depth=depth, embedding_dim=embedding_dim), source, ARCFACE_KEYS, str(src))
    save_converted(
        model,
        out_dir,
        src,
        command="arcface",
        description=f"ArcFace IResNet-{depth} face-recognition network of insightface's arcface_torch "
        "(https://github.com/deepinsight/insightface), used by HifiFace as its identity encoder F_id.",
        push_to_hub=push_to_hub,
    )
    return model


def convert_deep3d(
    src: PathLike, out_dir: PathLike, input_size: int = 224, push_to_hub: str | None = None
) -> Face3DRegressor:
    """Deep3DFaceRecon `epoch_20.pth` (state dict under 'net_recon') -> `Face3DRegressor` folder.

    Args:
        src (str or Path): the Deep3DFaceRecon checkpoint; entries other than 'net_recon' are ignored.
        out_dir (str or Path): folder to write.
        input_size (int, 224): size the regressor resizes its input to (the HifiFace release: 256).
        push_to_hub (str, None): also upload to this Hub repo id.
    """
    state = load_checkpoint(src, key="net_recon")
    model = load_converted(Face3DRegressor(input_size=input_size), state, DEEP3D_KEYS, str(src))
    save_converted(
        model,
        out_dir,
        src,
        command="deep3d",
        description="3DMM coefficient regressor (ResNet-50, 257 Basel Face Model coefficients) of "
        "Deep3DFaceRecon_pytorch (https://github.com/sicxu/Deep3DFaceRecon_pytorch), HifiFace's F_3d.",
        push_to_hub=push_to_hub,
    )
    return model


def convert_bfm(src_mat: PathLike, out_dir: PathLike, push_to_hub: str | None = None) -> BFMLandmarks:
    """Deep3DFaceRecon `BFM_model_front.mat` -> `BFMLandmarks` folder (68 landmarks only).

    The Basel Face Model may not be redistributed: a push goes to a private repo.

    Args:
        src_mat (str or Path): the .mat file (fields meanshape, idBase, exBase, keypoints).
        out_dir (str or Path): folder to write.
        push_to_hub (str, None): also upload to this (private) Hub repo id.
    """
    src_mat = Path(src_mat)
    if not src_mat.is_file():
        raise FileNotFoundError(f"no BFM file at {src_mat}")
    try:
        model = BFMLandmarks.from_mat(src_mat)
    except Exception as error:  # scipy raises several error types for files it cannot parse
        raise CheckpointError(f"cannot read {src_mat} as a BFM_model_front.mat: {error}") from error
    save_converted(
        model,
        out_dir,
        src_mat,
        command="bfm",
        description="The 68-landmark part of the Basel Face Model 2009 (recentred mean shape, identity "
        "and expression bases) as Deep3DFaceRecon_pytorch uses it, for HifiFace's shape loss.",
        push_to_hub=push_to_hub,
        private=True,
    )
    return model


def convert_bisenet(src: PathLike, out_dir: PathLike, push_to_hub: str | None = None) -> FaceParser:
    """face-parsing.PyTorch `79999_iter.pth` -> `FaceParser` folder.

    Args:
        src (str or Path): the BiSeNet state dict.
        out_dir (str or Path): folder to write.
        push_to_hub (str, None): also upload to this Hub repo id.
    """
    model = load_converted(FaceParser(), load_checkpoint(src), BISENET_KEYS, str(src))
    save_converted(
        model,
        out_dir,
        src,
        command="bisenet",
        description="BiSeNet face parser (19 CelebAMask-HQ classes) of face-parsing.PyTorch "
        "(https://github.com/zllrunning/face-parsing.PyTorch), for HifiFace's masks.",
        push_to_hub=push_to_hub,
    )
    return model


def convert_hififace_pytorch(src: PathLike, out_dir: PathLike, push_to_hub: str | None = None) -> HifiFace:
    """HiFiFace-pytorch `generator_<iter>.pth` -> complete `HifiFace` folder (generator + priors).

    The public release (https://github.com/xuehy/HiFiFace-pytorch, MIT) stores the encoder, decoder
    and SFF module together with the frozen ArcFace IResNet-100 and Deep3DFaceRecon regressor it was
    trained with, which sees the 256 crop directly (`face3d_input_size=256`).

    Args:
        src (str or Path): the generator state dict.
        out_dir (str or Path): folder to write.
        push_to_hub (str, None): also upload to this Hub repo id.
    """
    source = load_checkpoint(src)
    depth = release_arcface_depth(source, HIFIFACE_PYTORCH_KEYS)
    model = load_converted(HifiFace(arcface_depth=depth), source, HIFIFACE_PYTORCH_KEYS, str(src))
    save_converted(
        model,
        out_dir,
        src,
        command="hififace-pytorch",
        description="HifiFace face-swapping generator at 256×256 converted from the public "
        "HiFiFace-pytorch release (https://github.com/xuehy/HiFiFace-pytorch), with its frozen "
        f"priors: ArcFace IResNet-{depth} (insightface) and the Deep3DFaceRecon 3DMM regressor.",
        push_to_hub=push_to_hub,
    )
    return model


def release_arcface_depth(source: Mapping[str, torch.Tensor], table: KeyTable) -> int:
    """The IResNet depth of the ArcFace prior inside a released generator (100 when it holds none)."""
    prefix = "identity.arcface."
    arcface = {
        k.removeprefix(prefix): v for k, v in rename_keys(source, table).items() if k.startswith(prefix)
    }
    return arcface_depth(arcface) if arcface else 100


def read_lightning_generator(src: PathLike) -> dict[str, torch.Tensor]:
    """The `generator.*` tensors of a PyTorch Lightning checkpoint, read safely and lazily.

    Only those tensors are read from the zip (the discriminator, the loss networks' `g_loss.*`
    copies and the optimizer moments stay on disk), on the CPU whatever device they were saved from.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a pickle that calls anything but tensor and container rebuilds (refused
            before anything runs), a corrupt file, or one without `generator.*` tensors.
    """
    src = Path(src)
    if not src.is_file():
        raise FileNotFoundError(f"no checkpoint file at {src}")
    try:
        content, archive = read_zip_checkpoint(src)
    except RefusedPickle as error:
        raise CheckpointError(
            f"{src} was refused: {error}, and hififace only rebuilds tensors and containers from it"
        ) from None
    except CorruptCheckpoint as error:
        raise CheckpointError(f"cannot read {src}: {error}") from None
    try:
        state = content.get("state_dict", content) if isinstance(content, Mapping) else None
        if not isinstance(state, Mapping):
            raise CheckpointError(f"{src} holds a {type(content).__name__}, not a Lightning checkpoint")
        tensors = load_tensors(state, keep=lambda name: str(name).startswith("generator."))
    except CorruptCheckpoint as error:
        raise CheckpointError(f"cannot read {src}: {error}") from None
    finally:
        archive.close()
    if not tensors:
        found = ", ".join(sorted({str(k).split(".")[0] for k in state})[:8]) or "nothing"
        raise CheckpointError(f"{src} has no generator.* tensors (its state_dict has: {found})")
    return tensors


def convert_maum_ai(src: PathLike, out_dir: PathLike, push_to_hub: str | None = None) -> HifiFace:
    """maum-ai/hififace `hififace_opensouce_299999.ckpt` -> complete `HifiFace(sff="maum-ai")` folder.

    The release (https://github.com/maum-ai/hififace, BSD-3-Clause) is a PyTorch Lightning 1.4.5
    checkpoint. Its `generator.*` tensors hold the encoder, decoder and maum-ai's SFF module, with
    the ArcFace IResNet-100 and Deep3DFaceRecon regressor whose batch-norm statistics it trained
    with (copied as they are). Read with a restricted unpickler (`read_lightning_generator`), one
    tensor at a time, so converting needs about twice the generator's size (0.6 GB) in memory.

    Args:
        src (str or Path): the Lightning checkpoint.
        out_dir (str or Path): folder to write.
        push_to_hub (str, None): also upload to this Hub repo id.
    """
    source = read_lightning_generator(src)
    depth = release_arcface_depth(source, MAUM_AI_KEYS)
    model = HifiFace(arcface_depth=depth, sff="maum-ai")
    load_converted(model, source, MAUM_AI_KEYS, str(src))
    del source  # the model holds its own copy now: keep the peak at two generators while saving
    save_converted(
        model,
        out_dir,
        src,
        command="maum-ai",
        description="HifiFace face-swapping generator at 256×256 converted from maum-ai's public "
        "release (https://github.com/maum-ai/hififace, `hififace_opensouce_299999.ckpt`), with its "
        f"frozen priors: ArcFace IResNet-{depth} (insightface) and the Deep3DFaceRecon 3DMM regressor, "
        "batch-norm statistics as in the checkpoint. Its masks are tanh outputs in (-1, 1); "
        "compositing clamps them to [0, 1].",
        push_to_hub=push_to_hub,
    )
    return model
