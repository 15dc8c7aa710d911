"""Spec front end: text to raw tree (with positions) to checked IR."""
