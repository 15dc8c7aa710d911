"""The examples at the end of every subcommand's --help, kept apart from the parser so they read as a list.

Keys are command paths as typed after `netdsl` ("data pack" for a nested one). Every line must parse with the real
parser (tests/test_cli_help.py checks it), and the files they name exist in the repository, so the examples cannot drift.
"""

from __future__ import annotations

EXAMPLES: dict[str, list[str]] = {
    "summarize": [
        "netdsl summarize specs/resnet18.yaml",
        "netdsl summarize specs/resnet18.yaml --depth 1 --input 3x64x64",
        "netdsl summarize specs/mobilenet_v2.yaml --width 0.5 --json",
    ],
    "check": [
        "netdsl check specs/lenet5.yaml",
        "netdsl check specs/*.yaml",
        "netdsl check specs/vgg16.yaml --set num_classes=10",
        "netdsl check specs/*.yaml --json",
    ],
    "expand": ["netdsl expand specs/resnet18.yaml", "netdsl expand specs/lenet5.net"],
    "diff": ["netdsl diff specs/resnet18.yaml specs/resnet34.yaml", "netdsl diff specs/vgg16.yaml specs/vgg16.yaml --set num_classes=10"],
    "schema": ["netdsl schema > netdsl.schema.json", "netdsl schema --path", "netdsl schema --library > library.schema.json"],
    "train": [
        "netdsl train specs/lenet5.yaml --epochs 3",
        "netdsl train specs/lenet5.yaml --set train.optimizer.lr=0.01 --out runs",
        "netdsl train specs/lenet5.yaml --resume runs/lenet5-20250101-120000",
    ],
    "eval": ["netdsl eval runs/lenet5-20250101-120000", "netdsl eval specs/lenet5.yaml --weights runs/lenet5-20250101-120000/best.pt --json"],
    "predict": [
        "netdsl predict runs/lenet5-20250101-120000 examples/digit7.png",
        "netdsl predict runs/lenet5-20250101-120000 'digits/*.png' --top 1 --json",
    ],
    "export": [
        "netdsl export specs/lenet5.yaml -o lenet5.onnx",
        "netdsl export runs/lenet5-20250101-120000 -o lenet5.onnx --fp16",
    ],
    "infer": [
        "netdsl infer lenet5.onnx examples/digit7.png",
        "netdsl infer lenet5.onnx digits/ 'more/*.png' --top 1 --json",
    ],
    "bench": ["netdsl bench lenet5.onnx --batch 1,32", "netdsl bench specs/resnet18.yaml --no-compile --time 0.5"],
    "data": ["netdsl data pack images/ -o shards/"],
    "data pack": ["netdsl data pack images/ -o shards/ --shard-size 500"],
    "draw": [
        "netdsl draw specs/resnet18.yaml -o resnet18.svg",
        "netdsl draw specs/densenet121.yaml -o densenet121.html --depth 1",
        "netdsl draw specs/resnet18.yaml -o layer2.svg --only layer2.0 --direction LR",
    ],
    "convert": ["netdsl convert specs/lenet5.yaml", "netdsl convert specs/lenet5.yaml -o lenet5.net"],
    "fmt": ["netdsl fmt specs/lenet5.yaml", "netdsl fmt --check specs/*.yaml specs/*.net"],
    "lsp": ["netdsl lsp", "netdsl lsp --log /tmp/netdsl-lsp.log"],
    "completion": [
        "netdsl completion bash > ~/.local/share/bash-completion/completions/netdsl",
        "netdsl completion zsh > ~/.zfunc/_netdsl",
        "netdsl completion fish > ~/.config/fish/completions/netdsl.fish",
    ],
}


def epilog(command: str) -> str | None:
    """The `examples:` block for a command's --help, or None if it has none."""
    lines = EXAMPLES.get(command)
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) if lines else None
