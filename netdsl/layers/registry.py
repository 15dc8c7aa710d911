"""Name -> layer type. The one place a layer type becomes known to every stage.

A family module (netdsl/layers/conv.py, ...) registers its types when it is imported; `netdsl/layers/index.py`
(written by `make schema`) says which module holds which type word, so a spec loads only the families it uses
and a new family costs nothing to the specs that do not use it. A test keeps the index equal to the modules.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping

from netdsl.layers.base import Layer
from netdsl.layers.index import TYPES

_LOADED: dict[str, type[Layer]] = {}
_LOADED_ALIASES: dict[str, str] = {}
NOT_FAMILIES = ("base", "registry", "index", "modules")  # modules: the torch code the builders use


class _Layers(Mapping[str, type[Layer]]):
    """Every registered layer type by name, in registration order; a family is imported when one of its types is read."""

    def __getitem__(self, name: str) -> type[Layer]:
        if name not in _LOADED and name in TYPES:
            importlib.import_module(f"netdsl.layers.{TYPES[name][0]}")
        return _LOADED[name]

    def __contains__(self, name: object) -> bool:
        return name in TYPES or name in _LOADED

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*TYPES, *_LOADED]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*TYPES, *_LOADED]))


class _Aliases(Mapping[str, str]):
    """Short type words (conv for conv2d) -> the registered name."""

    def _all(self) -> dict[str, str]:
        return {**{alias: name for name, (_, aliases) in TYPES.items() for alias in aliases}, **_LOADED_ALIASES}

    def __getitem__(self, word: str) -> str:
        return self._all()[word]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


LAYERS: Mapping[str, type[Layer]] = _Layers()
ALIASES: Mapping[str, str] = _Aliases()
_ALIAS_OF = {alias: name for name, (_, aliases) in TYPES.items() for alias in aliases}


def register(name: str, *aliases: str, doc: str = "") -> Callable[[type[Layer]], type[Layer]]:
    """Class decorator: make a layer type available in specs under `name` (and short `aliases`)."""

    def deco(cls: type[Layer]) -> type[Layer]:
        for word in (name, *aliases):
            if word in _LOADED or word in _LOADED_ALIASES:
                raise ValueError(f"layer type name '{word}' is registered twice")
        cls.type_name, cls.aliases, cls.doc = name, aliases, doc or (cls.__doc__ or "").strip().splitlines()[0]
        _LOADED[name] = cls
        _LOADED_ALIASES.update(dict.fromkeys(aliases, name))
        return cls

    return deco


def canonical(word: str) -> str | None:
    """The registered name for a type word or alias, or None."""
    if word in TYPES or word in _LOADED:
        return word
    return _ALIAS_OF.get(word) or _LOADED_ALIASES.get(word)


def loaded() -> dict[str, type[Layer]]:
    """The types registered so far (the imported families'), in registration order."""
    return dict(_LOADED)


def all_type_words() -> list[str]:
    return sorted([*LAYERS, *ALIASES])


def load_all() -> None:
    """Import every family module (netdsl/layers/*.py), in name order: what the index and the schema are made from."""
    import netdsl.layers

    for module in sorted(m.name for m in pkgutil.iter_modules(netdsl.layers.__path__)):
        if module not in NOT_FAMILIES:
            importlib.import_module(f"netdsl.layers.{module}")


def index_text() -> str:
    """netdsl/layers/index.py as `make schema` writes it: every registered type with its module and aliases, the modules
    in name order and each module's types in the order it registers them (whatever was imported first)."""
    load_all()
    lines = [
        '"""Written by `make schema` (netdsl.layers.registry.index_text): each layer type, the module under netdsl/layers that',
        'registers it, and its aliases, in registration order. Do not edit; a test keeps it equal to the modules."""',
        "",
        "TYPES: dict[str, tuple[str, tuple[str, ...]]] = {",
        *(f'    "{name}": ("{_module(cls)}", {_tuple(cls.aliases)}),' for name, cls in sorted(_LOADED.items(), key=lambda item: _module(item[1]))),
        "}",
        "",
    ]
    return "\n".join(lines)


def _module(cls: type[Layer]) -> str:
    return cls.__module__.rsplit(".", 1)[1]


def _tuple(words: tuple[str, ...]) -> str:
    """A tuple of words written as ruff formats it."""
    return "(" + ", ".join(f'"{w}"' for w in words) + ("," if len(words) == 1 else "") + ")"
