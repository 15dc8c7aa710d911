"""WebDataset shards: `netdsl data pack` and the `webdataset` source (netdsl/train/shards.py).

Every image of the test folders is 8 x 8 and carries its own id in pixel (0, 0) (red = id % 256, green = id // 256),
so a batch tells exactly which samples it holds without any debugging hook.
"""

from __future__ import annotations

import functools
import gc
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("webdataset")

from PIL import Image

from netdsl.train.pack import pack
from netdsl.train.shards import ShardSplit, round_robin, shard_order, webdataset_splits
from netdsl.train.splits import DataError, Reading

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (3, 8, 8)
CLASSES = ["cat", "dog", "fox"]
TRAIN_PER_CLASS = {"cat": 12, "dog": 13, "fox": 14}  # 39 samples: 5 shards of 7 and one of 4
VAL_PER_CLASS = {"cat": 3, "dog": 4, "fox": 5}  # 12 samples: 7 + 5


def make_folder(root: Path, per_class: dict[str, int], first_id: int, labels: dict[int, int]) -> int:
    """PNG images whose pixel (0, 0) encodes a unique id; records id -> class index in `labels`."""
    next_id = first_id
    for label, name in enumerate(CLASSES):
        for k in range(per_class.get(name, 0)):
            folder = root / name / ("deeper" if k % 4 == 3 else "")  # images at any depth below the class folder
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.new("RGB", (8, 8), (40 * label, 255 - 20 * label, (7 * k) % 256))
            img.putpixel((0, 0), (next_id % 256, next_id // 256, 0))
            img.save(folder / f"img{k}.png")
            labels[next_id] = label
            next_id += 1
    return next_id


def ids_of(x: torch.Tensor) -> list[int]:
    return [round(r * 255) + 256 * round(g * 255) for r, g in zip(x[:, 0, 0, 0].tolist(), x[:, 1, 0, 0].tolist())]


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A train/ val/ image folder packed into shards of 7 samples."""
    root = tmp_path_factory.mktemp("shards")
    labels: dict[int, int] = {}
    end = make_folder(root / "images" / "train", TRAIN_PER_CLASS, 0, labels)
    make_folder(root / "images" / "val", VAL_PER_CLASS, end, labels)
    (root / "images" / "train" / "cat" / "notes.txt").write_text("not an image")
    calls: list[tuple[int, int]] = []
    summary = pack(root / "images", root / "out", shard_size=7, progress=lambda done, total: calls.append((done, total)))
    return {"root": root, "out": root / "out", "labels": labels, "train_ids": set(range(end)), "summary": summary, "progress": calls}


@pytest.fixture(scope="module")
def splits(packed: dict):
    cfg = {"urls": "train-{000000..000005}.tar", "val_urls": "file:val-{000000..000001}.tar", "shuffle_buffer": 5}
    result = webdataset_splits(cfg, SHAPE, packed["out"])
    yield result
    result.close()


def epoch(split: ShardSplit, reading: Reading, **kw) -> list[tuple[torch.Tensor, torch.Tensor, list]]:
    return list(split.batches(reading, **({"epoch": 0, "seed": 1, "shuffle": True} | kw)))


# ---------------------------------------------------------------- pack


def test_pack_writes_shards_and_index(packed: dict) -> None:
    out = packed["out"]
    index = json.loads((out / "index.json").read_text())
    assert index["classes"] == CLASSES
    assert index["splits"]["train"] == {"shards": [f"train-{i:06d}.tar" for i in range(6)], "counts": [7, 7, 7, 7, 7, 4], "samples": 39}
    assert index["splits"]["val"] == {"shards": ["val-000000.tar", "val-000001.tar"], "counts": [7, 5], "samples": 12}
    assert index["ignored"] == [os.path.join("train", "cat", "notes.txt")]
    assert sorted(p.name for p in out.iterdir()) == sorted([*index["splits"]["train"]["shards"], *index["splits"]["val"]["shards"], "index.json"])
    assert packed["summary"]["urls"] == {"train": "train-{000000..000005}.tar", "val": "val-{000000..000001}.tar"}
    assert packed["summary"]["stale"] == []
    assert packed["progress"] == [(n, 51) for n in range(1, 52)]  # after every sample


def shard_samples(path: Path) -> list[dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return [{"__key__": k.encode(), **v} for k, v in samples.items()]


def test_pack_keeps_the_original_bytes_and_mixes_classes(packed: dict) -> None:
    images = packed["root"] / "images"
    originals = sorted((p.read_bytes(), str(CLASSES.index(p.relative_to(images).parts[1])).encode()) for p in images.rglob("*.png"))
    stored, keys, mixed = [], [], 0
    for shard in sorted(packed["out"].glob("*.tar")):
        samples = shard_samples(shard)
        assert all(set(s) == {"__key__", "png", "cls"} for s in samples)
        stored += [(s["png"], s["cls"]) for s in samples]
        keys += [(shard.name[:3], s["__key__"]) for s in samples]
        mixed += len({s["cls"] for s in samples}) > 1
    assert sorted(stored) == originals  # byte for byte, no re-encoding
    assert len(set(keys)) == len(keys) and all(b"." not in k for _, k in keys)
    assert mixed >= 6  # shuffled before sharding: shards are not one class each


def test_pack_output_reads_with_webdataset_itself(packed: dict) -> None:
    import webdataset as wds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # WebDataset's opener leaves closing the shards to the GC
        samples = list(wds.WebDataset(str(packed["out"] / "train-{000000..000005}.tar"), shardshuffle=False))
        gc.collect()
    assert len(samples) == 39
    assert {int(s["cls"]) for s in samples} == {0, 1, 2}
    assert all(s["png"].startswith(b"\x89PNG") for s in samples)


def test_pack_bad_input(tmp_path: Path, packed: dict) -> None:
    images = packed["root"] / "images"
    with pytest.raises(DataError, match=r"^--shard-size: must be at least 1 sample per shard, got 0$"):
        pack(images, tmp_path / "a", shard_size=0)
    with pytest.raises(DataError, match=r"nope:1:1: no such folder$"):
        pack(tmp_path / "nope", tmp_path / "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty:1:1: no class sub-folders"):
        pack(tmp_path / "empty", tmp_path / "c")
    (tmp_path / "bare" / "cat").mkdir(parents=True)
    (tmp_path / "bare" / "cat" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"cat:1:1: class folder 'cat' holds no images"):
        pack(tmp_path / "bare", tmp_path / "d")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match=r"file:1:1: not a folder \(the shards and index.json go into a folder\)$"):
        pack(images, tmp_path / "file")
    with pytest.raises(DataError, match=r"inside the image folder"):
        pack(images, images / "train" / "shards")
    assert not list(tmp_path.glob("*/*.tar"))


# ---------------------------------------------------------------- reading


def test_splits_sizes_classes_and_notes(splits) -> None:
    assert (splits.train.size, splits.val.size, splits.test.size) == (39, 12, 0)
    assert splits.classes == CLASSES
    assert splits.train.uneven and splits.mean == [] and splits.std == []
    assert splits.notes == [
        "webdataset: 6 train shards (39 samples), 2 val shards (12 samples), no test shards; 3 classes from index.json; counts from index.json"
    ]
    assert list(splits.test.batches(Reading(batch_size=4), epoch=0, seed=0, shuffle=False)) == []


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # more workers than this machine has cores
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_every_sample_once_per_epoch_across_ranks_and_workers(splits, packed: dict, workers: int) -> None:
    seen: list[int] = []
    for rank in (0, 1):
        reading = Reading(batch_size=8, rank=rank, world=2, workers=workers)
        batches = epoch(splits.train, reading)
        assert len(batches) == splits.train.steps(reading)
        assert all(len(x) <= 4 for x, _, _ in batches)  # this rank's half of a global batch of 8
        for x, y, skipped in batches:
            assert skipped == [] and x.shape[1:] == SHAPE and y.dtype == torch.int64
            assert y.tolist() == [packed["labels"][i] for i in ids_of(x)]
            seen += ids_of(x)
    assert sorted(seen) == sorted(packed["train_ids"])


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # more workers than this machine has cores
def test_steps_match_the_batches_yielded(splits) -> None:
    for world, workers, batch in [(1, 0, 5), (1, 2, 8), (3, 2, 6), (2, 4, 2), (4, 1, 4)]:
        for rank in range(world):
            reading = Reading(batch_size=batch, rank=rank, world=world, workers=workers)
            assert splits.train.steps(reading) == len(epoch(splits.train, reading, epoch=3)), (world, workers, batch, rank)
    with pytest.raises(DataError, match=r"train.batch_size:1:1: 2 is smaller than the 3 processes"):
        splits.train.steps(Reading(batch_size=2, rank=2, world=3))


def test_order_is_a_function_of_seed_and_epoch(splits) -> None:
    reading = Reading(batch_size=8, workers=2)

    def order(**kw) -> list[int]:
        return [i for x, _, _ in epoch(splits.train, reading, **kw) for i in ids_of(x)]

    first = order(epoch=0, seed=1)
    assert order(epoch=0, seed=1) == first
    assert order(epoch=1, seed=1) != first
    assert order(epoch=0, seed=2) != first
    assert sorted(order(epoch=1, seed=1)) == sorted(first)


def test_stored_order_without_shuffle(splits, packed: dict) -> None:
    stored = []
    for shard in ("val-000000.tar", "val-000001.tar"):
        for sample in shard_samples(packed["out"] / shard):
            img = Image.open(io.BytesIO(sample["png"])).getpixel((0, 0))
            stored.append(img[0] + 256 * img[1])
    read = [i for x, _, _ in epoch(splits.val, Reading(batch_size=5), shuffle=False) for i in ids_of(x)]
    assert read == stored


def test_shard_order_keeps_each_slots_count() -> None:
    counts = [7, 7, 7, 7, 7, 4, 7, 3]
    orders = [shard_order(counts, seed=0, epoch=e, shuffle=True) for e in range(4)]
    for order in orders:
        assert sorted(order) == list(range(8))
        assert [counts[i] for i in order] == counts
    assert len({tuple(o) for o in orders}) > 1
    assert shard_order(counts, seed=0, epoch=5, shuffle=False) == list(range(8))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # more workers than this machine has cores
def test_dataloader_takes_worker_batches_round_robin() -> None:
    """torch's rule that resume relies on: batch i from worker i % W, exhausted workers passed over (any timing)."""
    lengths = [3, 1, 5, 0]

    class Numbered(torch.utils.data.IterableDataset):
        def __iter__(self):
            w = torch.utils.data.get_worker_info().id
            for j in range(lengths[w]):
                time.sleep(0.02 * (w == 2))  # a slow worker must not change the order
                yield w, j

    for prefetch in (1, 3):
        loader = torch.utils.data.DataLoader(Numbered(), batch_size=None, num_workers=4, prefetch_factor=prefetch)
        got = [(int(w), int(j)) for w, j in loader]
        assert [w for w, _ in got] == round_robin(lengths) == [0, 1, 2, 0, 2, 0, 2, 2, 2]
        assert [j for w, j in got if w == 2] == list(range(5))


@pytest.mark.parametrize(("world", "rank", "workers"), [(2, 0, 2), (1, 0, 2), (1, 0, 0)])
def test_resume_gives_the_rest_of_the_uninterrupted_epoch(splits, world: int, rank: int, workers: int) -> None:
    reading = Reading(batch_size=8, rank=rank, world=world, workers=workers)
    full = epoch(splits.train, reading, epoch=2, seed=7)
    schedule = round_robin(splits.train.stream_batches(reading, splits.train.streams(reading, list(range(6)))))
    assert workers < 2 or len(set(schedule)) == 2  # both streams in play, so resuming must rotate the workers
    for k in range(1, len(full) + 1):
        rest = list(splits.train.batches(reading, epoch=2, seed=7, shuffle=True, start_step=k))
        assert len(rest) == len(full) - k, k
        for (x, y, _), (x2, y2, _) in zip(rest, full[k:]):
            assert torch.equal(x, x2) and torch.equal(y, y2), k


def test_resume_passes_over_samples_without_decoding(splits, monkeypatch: pytest.MonkeyPatch) -> None:
    import netdsl.train.shards as shards

    decoded = []
    real = shards.decode_image
    monkeypatch.setattr(shards, "decode_image", lambda source, shape: decoded.append(1) or real(source, shape))
    reading = Reading(batch_size=8)
    rest = list(splits.train.batches(reading, epoch=0, seed=1, shuffle=True, start_step=3))
    assert sum(len(x) for x, _, _ in rest) == 39 - 24 == len(decoded)


# ---------------------------------------------------------------- bad data


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    make_folder(root / "images", {"cat": 5, "dog": 4}, 0, {})
    (root / "images" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    pack(root / "images", root / "out", shard_size=4)
    return root / "out"


def test_corrupt_sample_stops_the_run_unless_skipped(corrupt: Path) -> None:
    strict = webdataset_splits({"urls": "train-{000000..000002}.tar", "shuffle_buffer": 0}, SHAPE, corrupt)
    with pytest.raises(DataError, match=r"train-00000\d\.tar:\d{6}:1:1: cannot decode image: .*; set train.data.skip_corrupt: true to leave such samples out"):
        epoch(strict.train, Reading(batch_size=4, workers=2))
    lenient = webdataset_splits({"urls": "train-{000000..000002}.tar", "skip_corrupt": True}, SHAPE, corrupt)
    batches = epoch(lenient.train, Reading(batch_size=4, workers=2))
    skipped = [s for _, _, ss in batches for s in ss]
    assert len(skipped) == 1 and re.fullmatch(r".*/train-00000\d\.tar:\d{6}", skipped[0][0]) and "cannot decode image" in skipped[0][1]
    assert sum(len(x) for x, _, _ in batches) == 9
    assert len(batches) == lenient.train.steps(Reading(batch_size=4, workers=2))  # the left-out sample still counts in its batch


def test_sample_without_a_label_is_corrupt(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "odd.tar", "w") as tar:
        for name, data in [("a.png", png_bytes()), ("a.cls", b"1"), ("b.png", png_bytes())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = webdataset_splits({"urls": "odd.tar", "skip_corrupt": True}, SHAPE, tmp_path)
    assert result.classes == ["0", "1"] and result.train.size == 2
    ((_, y, skipped),) = epoch(result.train, Reading(batch_size=2), shuffle=False)
    assert y.tolist() == [1] and skipped == [(f"{tmp_path / 'odd.tar'}:b", "no .cls member (the class index)")]


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_counts_and_classes_by_scanning_without_index(packed: dict, tmp_path: Path) -> None:
    for shard in packed["out"].glob("train-*.tar"):
        shutil.copy(shard, tmp_path)
    result = webdataset_splits({"urls": str(tmp_path / "train-{000000..000005}.tar")}, SHAPE, Path("/"))
    assert result.train.counts == [7, 7, 7, 7, 7, 4]
    assert result.classes == ["0", "1", "2"]  # no index.json: the cls labels' indices
    assert "counted by scanning 6 shards" in result.notes[0]
    named = webdataset_splits({"urls": str(tmp_path / "train-{000000..000005}.tar"), "classes": ["a", "b", "c"]}, SHAPE, Path("/"))
    assert named.classes == ["a", "b", "c"]


def test_stale_index_is_caught_while_reading(packed: dict, tmp_path: Path) -> None:
    for shard in packed["out"].glob("train-*.tar"):
        shutil.copy(shard, tmp_path)
    index = json.loads((packed["out"] / "index.json").read_text())
    index["splits"]["train"]["counts"][0] = 6
    (tmp_path / "index.json").write_text(json.dumps(index))
    result = webdataset_splits({"urls": "train-{000000..000005}.tar", "shuffle_buffer": 0}, SHAPE, tmp_path)
    assert result.train.size == 38
    with pytest.raises(DataError, match=r"train-000000.tar:1:1: holds 7 samples, but 6 were counted before training"):
        epoch(result.train, Reading(batch_size=4), shuffle=False)
    (tmp_path / "train-000001.tar").write_bytes((tmp_path / "train-000001.tar").read_bytes()[:1000])
    with pytest.raises(DataError, match=r"train-000001.tar:1:1: cannot read the shard: "):
        epoch(result.train, Reading(batch_size=4, workers=2), shuffle=False)
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(DataError, match=r"index.json:1:1: not an index.json of netdsl data pack .*delete it to count samples by scanning"):
        webdataset_splits({"urls": "train-000000.tar"}, SHAPE, tmp_path)


def test_missing_and_empty_urls(packed: dict) -> None:
    out = packed["out"]
    with pytest.raises(DataError, match=r"train-000006.tar:1:1: no such shard \(4 of the 10 shards named by train.data.urls do not exist\)$"):
        webdataset_splits({"urls": "train-{000000..000009}.tar"}, SHAPE, out)
    with pytest.raises(DataError, match=r"val-000009.tar:1:1: no such shard \(1 of the 1 shards named by train.data.val_urls"):
        webdataset_splits({"urls": "train-000000.tar", "val_urls": "val-000009.tar"}, SHAPE, out)
    with pytest.raises(DataError, match=r"^train.data.urls:1:1: source webdataset needs train.data.urls, the training shards"):
        webdataset_splits({}, SHAPE, out)
    with pytest.raises(DataError, match=r"^train.data.urls:1:1: names no shards \(got ''\)"):
        webdataset_splits({"urls": ""}, SHAPE, out)
    with pytest.raises(DataError, match=r"^train.data:1:1: webdataset needs an image input \(C x H x W\); the spec's input is 64$"):
        webdataset_splits({"urls": "train-000000.tar"}, (64,), out)


def test_remote_shards_over_http_with_index(packed: dict, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("webdataset reads http URLs through curl")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(packed["out"])))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = webdataset_splits({"urls": url + "/train-{000000..000005}.tar"}, SHAPE, tmp_path)
        ids = [i for x, _, _ in epoch(result.train, Reading(batch_size=8, workers=2)) for i in ids_of(x)]
        assert sorted(ids) == sorted(packed["train_ids"])
        with pytest.raises(DataError, match=r"a remote shard needs an index.json beside it"):
            webdataset_splits({"urls": url + "/nothing/train-000000.tar"}, SHAPE, tmp_path)
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- the command


def test_cli_data_pack(packed: dict, tmp_path: Path) -> None:
    run = functools.partial(subprocess.run, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    done = run([sys.executable, "-m", "netdsl", "data", "pack", str(packed["root"] / "images"), "-o", "shards", "--shard-size", "20"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "shards: train 39 samples in 2 shards, val 12 in 1; classes: cat, dog, fox; index.json"
    assert lines[1] == "train.data: {source: webdataset, urls: 'shards/train-{000000..000001}.tar', val_urls: 'shards/val-000000.tar'}"
    assert json.loads((tmp_path / "shards" / "index.json").read_text())["splits"]["train"]["counts"] == [20, 19]
    missing = run([sys.executable, "-m", "netdsl", "data", "pack", "nope", "-o", "shards"])
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == "nope:1:1: no such folder\n"


def test_without_the_webdataset_extra(packed: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "webdataset", None)  # makes `import webdataset` fail
    with pytest.raises(DataError, match=r"^netdsl data pack:1:1: WebDataset shards need the webdataset package: pip install 'netdsl\[shards\]'$"):
        pack(packed["root"] / "images", tmp_path / "out")
    with pytest.raises(DataError, match=r"^train.data.urls:1:1: WebDataset shards need the webdataset package"):
        webdataset_splits({"urls": "train-000000.tar"}, SHAPE, packed["out"])
