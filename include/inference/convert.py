"""Convert a Hugging Face encoder (BERT family) to OpenVINO IR, once, cached by content hash.

The IR folds the whole embedding computation in: a small wrapper module builds the 4-D
additive attention mask itself (transformers' own mask building does not trace under every
version), runs the BERT embeddings and encoder, and applies the pooling (mean over the
mask, or CLS) and L2 normalisation of the spec. The result is saved with
``compress_to_fp16=False`` (OpenVINO would otherwise store FP16 weights) under
``${AGENTFLOW_MODEL_CACHE:-~/.cache/agentflow/models}/<name>-<hash>/`` next to the
model's ``tokenizer.json`` and a ``manifest.json``; the hash covers the source weights,
config, tokenizer, the pooling settings and :data:`CONVERTER_VERSION`. The folder is
written under a temporary name and renamed into place, under a file lock, so a crash
never leaves a half IR and two processes never convert the same model twice.

This is the only module that imports ``torch`` (the ``convert`` extra); the runtime reads
the IR with OpenVINO alone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.inference._errors import ConversionError
from include.inference.registry import ModelSpec

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

#: Bump when the exported graph changes: it is part of the cache key.
CONVERTER_VERSION = "1"
#: Files of a finished conversion; a folder without all of them is not a cache hit.
IR_FILES = ("model.xml", "model.bin", "tokenizer.json", "manifest.json")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "embedding"
_HASH_CHUNK = 1 << 20
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_hash_memo: dict[tuple[str, int, int], str] = {}


def cache_root() -> Path:
    """Where converted models live: ``AGENTFLOW_MODEL_CACHE`` or ``~/.cache/agentflow/models``."""
    return Path(os.environ.get("AGENTFLOW_MODEL_CACHE") or "~/.cache/agentflow/models").expanduser()


def compiled_cache_dir(root: Path | None = None) -> Path:
    """OpenVINO's ``CACHE_DIR`` for compiled blobs, inside the model cache."""
    return (root or cache_root()) / "ov-compiled"


@dataclass(frozen=True)
class ConvertedModel:
    """A converted model on disk.

    :param name: the registry name.
    :param folder: the ``<name>-<hash>`` folder.
    :param content_hash: the cache key.
    :param converted: ``True`` if this call converted it, ``False`` if it was cached.
    """

    name: str
    folder: Path
    content_hash: str
    converted: bool

    @property
    def xml(self) -> Path:
        """The IR's ``model.xml``."""
        return self.folder / "model.xml"

    @property
    def tokenizer(self) -> Path:
        """The model's ``tokenizer.json``."""
        return self.folder / "tokenizer.json"


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_memo:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
                digest.update(chunk)
        _hash_memo[key] = digest.hexdigest()
    return _hash_memo[key]


def source_files(folder: Path) -> list[Path]:
    """The files that define the model: config, tokenizer and weights.

    :raises ConversionError: the folder has no tokenizer.json or no weights.
    """
    weights = sorted({p for pattern in _WEIGHT_PATTERNS for p in folder.glob(pattern)})
    if not weights:
        raise ConversionError(f"{folder} has no weights (*.safetensors or pytorch_model*.bin)")
    if not (folder / "tokenizer.json").is_file():
        raise ConversionError(f"{folder} has no tokenizer.json (a fast tokenizer is needed at runtime)")
    return [folder / "config.json", folder / "tokenizer.json", *weights]


def content_hash(spec: ModelSpec, folder: Path) -> str:
    """The cache key: source files' contents, the pooling settings and the converter version."""
    digest = hashlib.sha256()
    digest.update(f"converter={CONVERTER_VERSION};pooling={spec.pooling};normalize={spec.normalize}".encode())
    for path in source_files(folder):
        digest.update(f";{path.name}={_file_digest(path)}".encode())
    return digest.hexdigest()[:16]


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished conversion."""
    return all((folder / name).is_file() for name in IR_FILES)


def ensure_converted(spec: ModelSpec, root: Path | None = None) -> ConvertedModel:
    """The model's IR, converting it first if the cache has none for its current content.

    :raises ConfigurationError: the source cannot be resolved.
    :raises ConversionError: the conversion failed (the cache is left untouched).
    :raises ImportError: conversion is needed and torch is not installed.
    """
    root = root or cache_root()
    source = spec.source.resolve()
    key = content_hash(spec, source)
    final = root / f"{spec.name}-{key}"
    if is_complete(final):
        log.info("model %s: converted IR cached at %s", spec.name, final)
        return ConvertedModel(spec.name, final, key, converted=False)
    with _locked(root / f".{spec.name}-{key}.lock"):
        if is_complete(final):  # another process finished it while we waited
            return ConvertedModel(spec.name, final, key, converted=False)
        tmp = root / f".tmp-{spec.name}-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _convert_into(spec, source, tmp, key)
            if final.exists():  # an incomplete leftover from an older layout
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("model %s: converted to %s", spec.name, final)
    return ConvertedModel(spec.name, final, key, converted=True)


def _convert_into(spec: ModelSpec, source: Path, out: Path, key: str) -> None:
    started = time.monotonic()
    log.info("model %s: converting %s (%s) to OpenVINO IR", spec.name, spec.source.describe(), source)
    try:
        model = export_ir(spec, source)
    except ImportError:
        raise
    except Exception as err:
        raise ConversionError(f"converting model {spec.name!r} from {source} failed: {err}") from err
    import openvino as ov

    log.info("model %s: saving IR (f32 weights) to %s", spec.name, out)
    ov.save_model(model, str(out / "model.xml"), compress_to_fp16=False)
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")
    manifest: dict[str, Any] = {
        "name": spec.name,
        "source": spec.source.describe(),
        "content_hash": key,
        "converter_version": CONVERTER_VERSION,
        "openvino": ov.get_version(),
        "pooling": spec.pooling,
        "normalize": spec.normalize,
        "inputs": list(INPUT_NAMES),
        "output": OUTPUT_NAME,
        "dimension": int(model.outputs[0].get_partial_shape()[1].get_length()),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info("model %s: conversion done in %.1f s", spec.name, time.monotonic() - started)


def export_ir(spec: ModelSpec, source: Path) -> ov.Model:
    """Trace the source model with its pooling folded in and return the OpenVINO model.

    :raises ImportError: torch (the ``convert`` extra) is not installed.
    :raises ConversionError: the architecture is not a BERT-style encoder.
    """
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"converting model {spec.name!r} needs PyTorch: install the `convert` extra "
            "(pip install -e '.[convert]', torch==2.13.0 CPU build)"
        ) from err
    import openvino as ov
    from transformers import AutoModel

    log.info("model %s: loading source weights", spec.name)
    encoder = AutoModel.from_pretrained(
        str(source), local_files_only=True, attn_implementation="eager", dtype=torch.float32
    ).eval()
    if not (hasattr(encoder, "embeddings") and hasattr(encoder, "encoder")):
        raise ConversionError(
            f"model {spec.name!r}: {type(encoder).__name__} is not a BERT-style encoder "
            "(embeddings + encoder); only those are supported"
        )

    class _PooledEncoder(torch.nn.Module):
        def __init__(self, bert: Any, pooling: str, normalize: bool) -> None:
            super().__init__()
            self.bert = bert
            self.pooling = pooling
            self.normalize = normalize

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            mask = attention_mask.to(torch.float32)
            additive = (1.0 - mask[:, None, None, :]) * torch.finfo(torch.float32).min
            hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            out = self.bert.encoder(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                weights = mask.unsqueeze(-1)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled

    wrapper = _PooledEncoder(encoder, spec.pooling, spec.normalize).eval()
    example = {name: torch.ones(2, 8, dtype=torch.int64) for name in INPUT_NAMES}
    example["token_type_ids"] = torch.zeros(2, 8, dtype=torch.int64)
    log.info("model %s: tracing with dynamic batch and sequence length", spec.name)
    with torch.no_grad():
        model = ov.convert_model(
            wrapper, example_input=example, input=[(name, [-1, -1], ov.Type.i64) for name in INPUT_NAMES]
        )
    for port, name in zip(model.inputs, INPUT_NAMES, strict=True):
        port.get_tensor().set_names({name})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    return model
