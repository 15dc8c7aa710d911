"""Checkpoints and run files: written atomically (temp file, fsync, rename), checksummed, loaded with weights_only."""

from __future__ import annotations

import hashlib
import io
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netdsl.atomic import write_atomic
from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.ir import Graph
from netdsl.lang.files import special_kind


def digest(value: Any, h: Any = None) -> str:
    """SHA-256 over a checkpoint's contents: every tensor's dtype, shape and bytes, and every other leaf's repr."""
    h = h or hashlib.sha256()
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(value, dict):
        for k, v in value.items():
            h.update(repr(k).encode())
            digest(v, h)
    elif isinstance(value, (list, tuple)):
        h.update(b"[" if isinstance(value, list) else b"(")
        for v in value:
            digest(v, h)
    else:
        h.update(repr(value).encode())
    return str(h.hexdigest())


def checkpoint_bytes(state: dict[str, Any]) -> bytes:
    """torch.save's bytes of a state with a SHA-256 of its contents inside (one file: no torn pair)."""
    buffer = io.BytesIO()
    torch.save({**state, "sha256": digest(state)}, buffer)
    return buffer.getvalue()


def save_checkpoint(path: Path, state: dict[str, Any] | bytes) -> None:
    """torch.save, atomically, checksummed (a state, or checkpoint_bytes already made from one)."""
    write_atomic(path, state if isinstance(state, bytes) else checkpoint_bytes(state))


TORCH_SAVE_MAGIC = (b"PK\x03\x04", b"\x80")  # torch.save: a zip archive (since 1.6), or a bare pickle (the legacy format)


def zip_damage(data: bytes) -> str:
    """'' if a zip archive's directory reads and every member matches its CRC-32, else what was found."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        return f"not a valid zip archive ({exc}; truncated or overwritten)"
    except Exception as exc:  # a damaged header can make zipfile fail in other ways
        return f"not a valid zip archive ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'unreadable'})"
    return f"its member {bad} fails its CRC-32 check (overwritten bytes)" if bad else ""


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint verified against its checksum; a truncated or corrupt file is a clear one-line error."""
    where = Loc(str(path), 1, 1)
    if kind := special_kind(path):  # torch.load would wait on a FIFO or read a device forever
        raise SpecError([Diagnostic(where, f"is {kind}, not a checkpoint")])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError([Diagnostic(where, f"cannot read checkpoint: {exc.strerror}")]) from None
    if not data.startswith(TORCH_SAVE_MAGIC):
        if data[:4] == b"\0\0\0\0":
            raise SpecError([Diagnostic(where, "checkpoint is damaged: its first bytes are zeros (overwritten)")])
        what = "an ONNX model" if path.suffix == ".onnx" else "not a file torch.save wrote"
        raise SpecError([Diagnostic(where, f"{what}; weights come from a .pt file (a state dict or a netdsl checkpoint) or a .safetensors file")])
    if data.startswith(b"PK") and (damage := zip_damage(data)):
        raise SpecError([Diagnostic(where, f"checkpoint is damaged: {damage}")])
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise SpecError([Diagnostic(where, f"checkpoint is truncated or corrupt (UnpicklingError: {str(exc).splitlines()[0][:120]})")]) from None
        raise SpecError(
            [Diagnostic(where, "holds Python objects beyond tensors, which a safe load (weights_only=True) refuses; save model.state_dict() instead")]
        ) from None
    except Exception as exc:  # torch raises many kinds for a damaged file
        raise SpecError([Diagnostic(where, f"checkpoint is truncated or corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")]) from None
    if not isinstance(state, dict):
        raise SpecError([Diagnostic(where, "not a netdsl checkpoint (expected a dict)")])
    expected = state.pop("sha256", None)
    if expected is not None and expected != digest(state):
        raise SpecError([Diagnostic(where, "checkpoint is corrupt: its contents do not match the SHA-256 stored in it")])
    return state


def resume_point(run: Path) -> tuple[Path, dict[str, Any], str]:
    """The checkpoint a resume continues from, verified: last.pt, else best.pt (written at an epoch's end, after last.pt);
    with a note when last.pt was passed over. Neither usable: one line saying what was found."""
    problems: list[str] = []
    for name in ("last.pt", "best.pt"):
        path = run / name
        if not path.exists():
            problems.append(f"no {name}")
            continue
        try:
            state = load_checkpoint(path)
        except SpecError as exc:
            problems.append(f"{name}: {exc.diagnostics[0].message}")
            continue
        note = f"{run / 'last.pt'}: {problems[0].removeprefix('last.pt: ')}; resuming from best.pt (epoch {state['epoch']})" if problems else ""
        return path, state, note
    raise SpecError([Diagnostic(Loc(str(run), 1, 1), "nothing to resume: " + "; ".join(problems))])


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, in a form torch.load(weights_only=True) accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def weights_from_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, a plain .pt state dict, or a checkpoint's 'model' entry."""
    where = Loc(str(path), 1, 1)
    if not path.exists():
        raise SpecError([Diagnostic(where, "no such weights file")])
    if kind := special_kind(path):  # train.transfer.weights, --weights: never wait on a FIFO or read a device
        raise SpecError([Diagnostic(where, f"is {kind}, not a weights file")])
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as exc:
            raise SpecError([Diagnostic(where, f"not a readable .safetensors file ({exc})")]) from None
    state = load_checkpoint(path)
    weights = state.get("model", state)
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise SpecError([Diagnostic(where, "holds no state dict (expected tensors, or a checkpoint with 'model')")])
    return dict(weights)


def trained_module(graph: Graph, path: Path) -> torch.nn.Module:
    """The spec's module in eval mode with the weights of `path` (strict); a file that does not fit is one line naming it."""
    from netdsl.backends.pytorch import WeightsError, build_module, load_weights

    state = weights_from_file(path)
    with torch.device("meta"):
        model = build_module(graph)  # every value is overwritten by the strict load: skip initializing
    model = model.to_empty(device="cpu")
    try:
        load_weights(model, state, strict=True)
    except WeightsError as exc:
        raise SpecError([Diagnostic(Loc(str(path), 1, 1), f"{exc} (spec {graph.file})")]) from None
    return model.eval()
