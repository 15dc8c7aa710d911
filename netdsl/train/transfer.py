"""Transfer learning: start from other weights (renamed by key_map, head replaced), freeze layers, report what happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from netdsl.backends.pytorch import load_weights
from netdsl.errors import Diagnostic, Loc, SpecError
from netdsl.lang.train_section import check_freeze_patterns, freeze_matches
from netdsl.train.checkpoint import weights_from_file

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class TransferReport:
    """What `apply_transfer` did, for the line the run prints."""

    source: str = ""
    loaded: int = 0
    replaced: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    frozen: tuple[int, int] = (0, 0)  # (tensors, parameters)
    trainable: tuple[int, int] = (0, 0)

    def line(self) -> str:
        parts = []
        if self.source:
            parts.append(f"{self.loaded} tensors loaded from {self.source}")
        if self.replaced:
            parts.append(f"head replaced ({', '.join(self.replaced)} keep their new initialization)")
        if self.missing:
            parts.append(f"{len(self.missing)} not in the file, left as initialized (first: {self.missing[0]})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} in the file not used (first: {self.unexpected[0]})")
        parts.append(f"frozen {self.frozen[1]:,} parameters in {self.frozen[0]} tensors, trainable {self.trainable[1]:,} in {self.trainable[0]}")
        return "transfer: " + "; ".join(parts)


def set_frozen(model: nn.Module, patterns: list[str], frozen: bool) -> None:
    for name, p in model.named_parameters():
        if any(freeze_matches(name, pat) for pat in patterns):
            p.requires_grad_(not frozen)


def apply_transfer(model: nn.Module, transfer: dict[str, Any] | None, head: str, base: Path) -> TransferReport | None:
    """Load, rename, replace the head, freeze; None when the spec has no transfer section."""
    if not transfer:
        return None
    report = TransferReport()
    names = [n for n, _ in model.named_parameters()]
    check_freeze_patterns(transfer.get("freeze", []), names)
    if "weights" in transfer:
        path = (base / transfer["weights"]).resolve()
        state = weights_from_file(path)
        for old, new in transfer["key_map"].items():
            if not any(k.startswith(old) for k in state):
                raise SpecError(
                    [
                        Diagnostic(
                            Loc("train.transfer.key_map", 1, 1), f"'{old}' is the start of no key in {path.name} (first keys: {', '.join(list(state)[:3])})"
                        )
                    ]
                )
            state = {(new + k[len(old) :] if k.startswith(old) else k): v for k, v in state.items()}
        own = model.state_dict()
        if transfer["replace_head"]:  # a head trained for another number of classes keeps its new initialization
            report.replaced = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape and k.rsplit(".", 1)[0] == head)
            state = {k: (own[k] if k in report.replaced else v) for k, v in state.items()}
        try:
            load_weights(model, state, strict=transfer["strict"])
        except Exception as exc:
            raise SpecError([Diagnostic(Loc(str(path), 1, 1), str(exc))]) from None
        report.source = str(path)
        report.loaded = sum(1 for k in state if k in own and k not in report.replaced)
        report.missing = [k for k in own if k not in state]
        report.unexpected = [k for k in state if k not in own]
    set_frozen(model, transfer["freeze"], True)
    params = list(model.parameters())
    report.frozen = (sum(1 for p in params if not p.requires_grad), sum(p.numel() for p in params if not p.requires_grad))
    report.trainable = (sum(1 for p in params if p.requires_grad), sum(p.numel() for p in params if p.requires_grad))
    return report


def freeze_norm_statistics(model: nn.Module) -> None:
    """BatchNorm layers whose parameters are all frozen go to eval mode: their running statistics stay as loaded (Keras' rule).

    Called after every `model.train()`.
    """
    for module in model.modules():
        if isinstance(module, NORMS):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()
