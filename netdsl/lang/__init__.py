"""Text <-> tree: YAML and .net specs and block libraries read with positions, the JSON Schema and its checks in
plain sentences, expressions, parameters, imports, the `train:` section, --set, budgets, and the writers behind
convert and fmt. Torch-free; the IR is built from its trees by netdsl.graph."""
