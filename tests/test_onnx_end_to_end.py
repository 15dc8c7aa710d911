"""Train LeNet-5 for one epoch on the bundled digits, export the run, infer with onnxruntime: the same predictions as PyTorch."""

from __future__ import annotations

import numpy as np
import torch
import yaml
from PIL import Image

from netdsl.backends.pytorch import build_module, load_weights
from netdsl.graph.load import load
from netdsl.runtime.infer import infer
from netdsl.train.api import train
from netdsl.train.checkpoint import weights_from_file
from netdsl.train.evaluation import predict
from netdsl.train.fitting import fit_to_input
from netdsl.train.sources import read_digits
from tests.conftest import SPECS
from tests.onnx_registry import shared_onnx_registry  # noqa: F401 (an autouse fixture)


def test_trained_lenet5_predicts_the_same_on_onnxruntime(tmp_path, cli):
    run = train(SPECS / "lenet5.yaml", out=tmp_path / "runs", settings={"train.epochs": 1}, log=lambda _: None)
    code, stdout, stderr = cli("export", str(run), "-o", str(tmp_path / "lenet5.onnx"))
    assert code == 0, stderr
    assert stdout.splitlines()[-1] == f"weights: {run / 'best.pt'}; classes: 10; normalization recorded"

    x, labels, _ = read_digits()
    samples = fit_to_input(x[-60:], (1, 32, 32)).numpy()  # the last 60 digits at the network's input size, in [0, 1]
    np.save(tmp_path / "digits.npy", samples)
    pngs = []
    for i in range(3):
        pngs.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray((samples[i, 0] * 255).round().astype(np.uint8)).save(pngs[-1])

    _, on_onnx = infer(tmp_path / "lenet5.onnx", [str(tmp_path / "digits.npy"), *pngs], provider="cpu", top=3)
    on_torch = predict(run / "resolved.yaml", run / "best.pt", [str(tmp_path / "digits.npy"), *pngs], top=3)
    assert len(on_onnx) == len(on_torch) == 63
    assert [p.source for p in on_onnx] == [t["input"] for t in on_torch] == [f"{tmp_path / 'digits.npy'}[{i}]" for i in range(60)] + pngs
    for mine, theirs in zip(on_onnx, on_torch):  # every sample of the stack and every image: same classes, same probabilities
        assert [name for _, name, _ in mine.top] == [t["class"] for t in theirs["top"]]
        np.testing.assert_allclose([p for _, _, p in mine.top], [t["p"] for t in theirs["top"]], atol=1e-3)

    model = build_module(load(run / "resolved.yaml")).eval()
    load_weights(model, weights_from_file(run / "best.pt"))
    normalize = yaml.safe_load((run / "resolved.yaml").read_text())["train"]["data"]["normalize"]
    with torch.no_grad():
        logits = model((torch.from_numpy(samples) - normalize["mean"][0]) / normalize["std"][0])
    assert [int(p.top[0][1]) for p in on_onnx[:60]] == logits.argmax(1).tolist()  # all 60: the same top-1 class
    assert np.mean(logits.argmax(1).numpy() == labels[-60:].numpy()) > 0.5  # one epoch has learned something
