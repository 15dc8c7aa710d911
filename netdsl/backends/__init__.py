"""Backends: each reads the IR (netdsl.ir.Graph) and nothing else, and imports its framework lazily."""
