"""Tasks beyond classification: segmentation throughput against a hand-written loop, and the two task demos, in one run.

- throughput: images/s of `netdsl train specs/unet_shapes.yaml` (its own process; the mean of metrics.jsonl samples_per_s
  over epochs 2 .. --epochs, each from the first batch requested to the last step) against a hand-written loop in its own
  process: the same model (netdsl.compile of the spec, seed 0), the same 1,400 training images of the shapes set
  (netdsl.train.shapes, the spec's seed and sample count), normalized with the mean/std netdsl recorded, the same
  horizontal flips (images and masks), Adam 3e-3, cross-entropy with ignore_index 255, batch 32, shuffled every epoch,
  timed the same way. --rounds alternating rounds, medians (this machine's speed drifts by 10-20% from run to run). Goal: >= 0.95x.
- segmentation demo: whole-process time of `netdsl train specs/unet_shapes.yaml` (its own 10 epochs) and its test mIoU.
  Goals: <= 180 s, mIoU >= 0.85.
- denoising demo: `netdsl train specs/autoencoder_digits.yaml`: test PSNR of the outputs against the clean digits and of the
  noisy inputs (the same seeded noise). Goal: >= the noisy input's + 6 dB.

    .venv/bin/python bench/bench_tasks.py [--only throughput,segmentation,denoising] [--rounds 5] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import ROOT, alternate, netdsl_train, report, run_command

SPEC = ROOT / "specs" / "unet_shapes.yaml"
PARTS = ("throughput", "segmentation", "denoising")

HAND_LOOP = r"""
import json, statistics, sys, time
import torch, yaml
import netdsl
from netdsl.train.shapes import make_shapes
from netdsl.train.sources import split_positions

spec, resolved_path, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
resolved = yaml.safe_load(open(resolved_path))
data = resolved["train"]["data"]
torch.manual_seed(0)
model = netdsl.compile(spec, seed=0)
shape = tuple(int(v) for v in resolved["input"].split("x"))
images, masks, _ = make_shapes(shape, data["samples"], data["seed"])
train = split_positions(len(images), [data["split"]["train"], data["split"]["val"], data["split"]["test"]], data["shuffle"], data["seed"])[0]
x_all, y_all = images[torch.as_tensor(train)], masks[torch.as_tensor(train)].long()
mean = torch.tensor(data["normalize"]["mean"]).view(1, -1, 1, 1)
std = torch.tensor(data["normalize"]["std"]).view(1, -1, 1, 1)
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
bs = resolved["train"]["batch_size"]
rates = []
for epoch in range(epochs):
    model.train()
    order = torch.randperm(len(x_all))
    start, seen = time.perf_counter(), 0
    for i in range(0, len(order), bs):
        idx = order[i : i + bs]
        x = x_all[idx].float() / 255.0
        y = y_all[idx]
        flip = torch.rand(len(x)) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        y = torch.where(flip.view(-1, 1, 1), y.flip(-1), y)
        loss = loss_fn(model((x - mean) / std), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(x)
    rates.append(seen / (time.perf_counter() - start))
print(json.dumps({"samples_per_s": statistics.mean(rates[1:] or rates)}))
"""


def bench_throughput(root: Path, args: argparse.Namespace) -> None:
    ours: list[float] = []
    theirs: list[float] = []
    resolved: list[Path] = []

    def netdsl_run() -> None:
        out = Path(tempfile.mkdtemp(dir=root))
        done = netdsl_train(SPEC, out, "--epochs", str(args.epochs))
        assert done.run is not None
        resolved.append(done.run / "resolved.yaml")
        ours.append(statistics.mean(row["samples_per_s"] for row in done.metrics[1:] or done.metrics))

    def hand_run() -> None:
        script = root / "hand_loop.py"
        script.write_text(HAND_LOOP)
        done = run_command([sys.executable, str(script), str(SPEC), str(resolved[0]), str(args.epochs)], ROOT)
        theirs.append(json.loads(done.output.strip().splitlines()[-1])["samples_per_s"])

    alternate(args.rounds, netdsl_run, hand_run)  # netdsl first: the hand loop uses the statistics it records
    a, b = statistics.median(ours), statistics.median(theirs)
    report(
        "segmentation throughput",
        f"netdsl train {a:,.0f} images/s (epochs 2-{args.epochs}: mean of their rates)",
        f"hand-written loop {b:,.0f} images/s (median of {args.rounds})",
        a / b,
        ">= 0.95x",
    )


def bench_segmentation(root: Path, args: argparse.Namespace) -> None:
    done = netdsl_train(SPEC, Path(tempfile.mkdtemp(dir=root)))
    miou = float(done.results["test_miou"])
    print(
        f"segmentation demo: netdsl train specs/unet_shapes.yaml {done.wall:.1f} s whole process (goal <= 180 s: "
        f"{'met' if done.wall <= 180 else 'NOT met'}), test mIoU {miou:.4f} (goal >= 0.85: {'met' if miou >= 0.85 else 'NOT met'}), "
        f"pixel accuracy {done.results['test_pixel_accuracy']:.4f}, peak memory {done.largest_peak:,.0f} MiB",
        flush=True,
    )


def bench_denoising(root: Path, args: argparse.Namespace) -> None:
    done = netdsl_train(ROOT / "specs" / "autoencoder_digits.yaml", Path(tempfile.mkdtemp(dir=root)))
    out, noisy = float(done.results["test_psnr"]), float(done.results["test_input_psnr"])
    print(
        f"denoising demo: netdsl train specs/autoencoder_digits.yaml {done.wall:.1f} s whole process, test PSNR {out:.2f} dB against the "
        f"clean digits, noisy input {noisy:.2f} dB: +{out - noisy:.2f} dB (goal >= +6 dB: {'met' if out - noisy >= 6 else 'NOT met'})",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default=",".join(PARTS), help="comma-separated parts: " + ", ".join(PARTS))
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of the throughput comparison")
    p.add_argument("--epochs", type=int, default=3, help="epochs per throughput run (the last one is timed)")
    args = p.parse_args()
    parts = args.only.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        p.error(f"unknown part(s): {', '.join(unknown)}")
    with tempfile.TemporaryDirectory(prefix="netdsl-bench-tasks-") as tmp:
        for part in PARTS:
            if part in parts:
                globals()[f"bench_{part}"](Path(tmp), args)


if __name__ == "__main__":
    main()
