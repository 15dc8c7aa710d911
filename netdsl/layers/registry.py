"""Name -> layer type. The one place a layer type becomes known to every stage."""

from __future__ import annotations

from collections.abc import Callable

from netdsl.layers.base import Layer

LAYERS: dict[str, type[Layer]] = {}
ALIASES: dict[str, str] = {}


def register(name: str, *aliases: str, doc: str = "") -> Callable[[type[Layer]], type[Layer]]:
    """Class decorator: make a layer type available in specs under `name` (and short `aliases`)."""

    def deco(cls: type[Layer]) -> type[Layer]:
        for word in (name, *aliases):
            if word in LAYERS or word in ALIASES:
                raise ValueError(f"layer type name '{word}' is registered twice")
        cls.type_name, cls.aliases, cls.doc = name, aliases, doc or (cls.__doc__ or "").strip().splitlines()[0]
        LAYERS[name] = cls
        ALIASES.update(dict.fromkeys(aliases, name))
        return cls

    return deco


def canonical(word: str) -> str | None:
    """The registered name for a type word or alias, or None."""
    return word if word in LAYERS else ALIASES.get(word)


def all_type_words() -> list[str]:
    return sorted([*LAYERS, *ALIASES])
