"""A safe reader for PyTorch zip checkpoints that `torch.load(weights_only=True)` refuses.

Training frameworks pickle their own objects next to the weights: maum-ai/hififace's release is a
PyTorch Lightning checkpoint whose pickle names Lightning's `ModelCheckpoint` class, OmegaConf
containers, `typing.Any` and `collections.defaultdict`, with storages tagged `cuda:0`. Loading it
with `weights_only=False` would import those packages and run their code. `read_zip_checkpoint`
instead unpickles with a restricted `pickle.Unpickler`:

- tensors are rebuilt by our own function (for `torch._utils._rebuild_tensor_v2`), as lazy
  `StoredTensor` records: no bytes are read until `StoredTensor.load` (always on the CPU, whatever
  device the storage was saved from), so a caller that keeps a part of a large file reads only it;
- `collections.OrderedDict`/`defaultdict` become plain ordered dicts, torch storage classes dtypes;
- every other global becomes an inert stub class named after it: the file may build instances of it
  (NEWOBJ/BUILD only store the pickled state), but calling it (REDUCE, OBJ, INST) raises
  `RefusedPickle`. Nothing the file names is ever imported, and no callable the file names runs.

A file that tries to call anything else (a `__reduce__` returning `os.system`, say) is refused
before that call, so nothing runs.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

# the torch storage classes a checkpoint names (`torch.FloatStorage`, ...) -> their dtypes
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asks to call something other than a tensor or container rebuild."""


class CorruptCheckpoint(ValueError):
    """The file is not a readable PyTorch zip checkpoint."""


@dataclass(frozen=True)
class StoredStorage:
    """One storage record of the zip (`<prefix>data/<key>`): `numel` values of `dtype`."""

    archive: ZipCheckpoint
    key: str
    dtype: torch.dtype
    numel: int


@dataclass(frozen=True)
class StoredTensor:
    """A tensor of the checkpoint, not read yet: a strided view into one storage record."""

    storage: StoredStorage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.size

    def load(self) -> torch.Tensor:
        """Read the tensor's storage from the file and return the tensor, on the CPU."""
        return self.view(self.storage.archive.read_storage(self.storage))

    def view(self, storage: torch.Tensor) -> torch.Tensor:
        """This tensor as a view of its storage's values (a flat CPU tensor)."""
        extent = 1 + self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if math.prod(self.size) and extent > storage.numel():
            raise CorruptCheckpoint(
                f"a tensor of shape {self.size} reaches past its storage {self.storage.key} "
                f"({storage.numel()} values)"
            )
        return torch.as_strided(storage, self.size, self.stride, self.offset)


class ZipCheckpoint:
    """An open PyTorch zip checkpoint: its records, read on demand."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise CorruptCheckpoint(f"{path} is not a PyTorch zip checkpoint ({error})") from error
        pickles = [n for n in self.zip.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise CorruptCheckpoint(f"{path} has {len(pickles)} data.pkl records, not one")
        self.prefix = pickles[0][: -len("data.pkl")]  # 'archive/' for a torch.save to a file object
        byteorder = self.prefix + "byteorder"
        if byteorder in self.zip.namelist() and self.zip.read(byteorder) != b"little":
            raise CorruptCheckpoint(f"{path} was saved big-endian, which hififace does not read")

    def read_pickle(self) -> bytes:
        return self.zip.read(self.prefix + "data.pkl")

    def read_storage(self, storage: StoredStorage) -> torch.Tensor:
        name = f"{self.prefix}data/{storage.key}"
        size = storage.numel * torch.empty((), dtype=storage.dtype).element_size()
        try:
            info = self.zip.getinfo(name)
        except KeyError:
            raise CorruptCheckpoint(f"{self.path} has no record {name}") from None
        if info.file_size != size:  # checked before allocating what the pickle claims
            raise CorruptCheckpoint(f"{self.path}: record {name} holds {info.file_size} bytes, not {size}")
        buffer = bytearray(size)
        with self.zip.open(info) as record:
            if record.readinto(buffer) != size:
                raise CorruptCheckpoint(f"{self.path}: record {name} is truncated")
        if not buffer:
            return torch.empty(0, dtype=storage.dtype)
        return torch.frombuffer(buffer, dtype=storage.dtype)

    def close(self) -> None:
        self.zip.close()


def _stub(module: str, name: str) -> type:
    """An inert stand-in for the global `module.name`: instances hold their pickled state, nothing else."""

    class Refusing(type):
        def __call__(cls, *args, **kwargs):
            raise RefusedPickle(f"it calls {module}.{name}")

    def __setstate__(self, state: object) -> None:
        self.__dict__["pickled_state"] = state

    return Refusing(name, (), {"__module__": f"stub:{module}", "__setstate__": __setstate__})


def _plain_dict(*args: object) -> OrderedDict:
    """`defaultdict(factory)` rebuilt as a plain ordered dict; the factory is never called."""
    return OrderedDict()


class SafeUnpickler(pickle.Unpickler):
    """Rebuilds tensors (lazily), storages and containers; every other global is an inert stub."""

    def __init__(self, file: io.BytesIO, archive: ZipCheckpoint):
        super().__init__(file)
        self.archive = archive
        self.stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("collections", "defaultdict"):
            return _plain_dict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        return self.stubs.setdefault((module, name), _stub(module, name))

    def persistent_load(self, pid: object) -> StoredStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise RefusedPickle(f"unknown persistent id {pid!r:.80}")
        _, dtype, key, _location, numel = pid  # the location (e.g. 'cuda:0') is ignored: CPU only
        if not isinstance(dtype, torch.dtype) or not isinstance(numel, int) or numel < 0:
            raise RefusedPickle(f"malformed storage record {pid!r:.80}")
        return StoredStorage(self.archive, str(key), dtype, numel)


def _rebuild_tensor(
    storage: object, offset: object, size: object, stride: object, *_rest: object
) -> StoredTensor:
    """`torch._utils._rebuild_tensor_v2` as a lazy record (requires_grad and hooks are dropped)."""
    valid = (
        isinstance(storage, StoredStorage)
        and isinstance(offset, int)
        and all(
            isinstance(t, tuple) and all(isinstance(n, int) and n >= 0 for n in t) for t in (size, stride)
        )
        and len(size) == len(stride)
    )
    if not valid:
        raise RefusedPickle("a tensor rebuild with malformed arguments")
    return StoredTensor(storage, offset, tuple(size), tuple(stride))


def read_zip_checkpoint(path: str | Path) -> tuple[object, ZipCheckpoint]:
    """Unpickle a PyTorch zip checkpoint safely; tensors come back as lazy `StoredTensor` records.

    Args:
        path (str or Path): the checkpoint file.

    Returns (content, archive): the unpickled object (dicts, lists, `StoredTensor`s, stubs) and the
    open archive the tensors read from; close it when done.

    Raises:
        RefusedPickle: the pickle calls something other than a tensor or container rebuild.
        CorruptCheckpoint: not a zip checkpoint, or a broken one.
    """
    archive = ZipCheckpoint(Path(path))
    try:
        content = SafeUnpickler(io.BytesIO(archive.read_pickle()), archive).load()
    except RefusedPickle:
        archive.close()
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, TypeError, ValueError) as error:
        archive.close()
        raise CorruptCheckpoint(f"{path}: broken pickle ({type(error).__name__}: {error})") from error
    return content, archive


def load_tensors(
    tensors: Mapping[str, StoredTensor], keep: Callable[[str], bool] = lambda name: True
) -> dict[str, torch.Tensor]:
    """Read the `StoredTensor`s whose names `keep` accepts; storages shared by several are read once."""
    read: dict[str, torch.Tensor] = {}
    cache: dict[str, torch.Tensor] = {}
    for name, stored in tensors.items():
        if not keep(name):
            continue
        if not isinstance(stored, StoredTensor):
            raise CorruptCheckpoint(f"{name} is a {type(stored).__name__}, not a tensor")
        key = stored.storage.key
        if key not in cache:
            cache[key] = stored.storage.archive.read_storage(stored.storage)
        read[name] = stored.view(cache[key])
    return read
