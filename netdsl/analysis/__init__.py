"""IR -> figures: parameter, buffer and MAC counts (counts.py), memory (memory.py), the summary table (summary.py),
the flat spec of `netdsl expand` (expand.py), `netdsl diff` (diff.py) and pictures (draw/). Torch-free."""
