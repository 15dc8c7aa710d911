"""Language server latency and memory: `netdsl lsp` driven over stdio by a real LSP client (pygls).

Prints, for specs/resnet152 and specs/preact_resnet1001 in both formats:
  - didChange -> publishDiagnostics (for that version): median and p90 over --edits edits, each changing the
    `num_classes` value (so every check is a full check of the whole network),
  - the baselines measured in the same run: in-process netdsl.lsp.document.analyze() and a fresh `netdsl check SPEC`
    process (what an editor without a server would run on each save), and the ratios;
then the server's resident memory (VmRSS) after the first check of resnet152 and after --memory-edits more edits.
Goals (issue 17): median <= 100 ms (ResNet-152) and <= 400 ms (pre-activation ResNet-1001); memory growth <= 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lsprotocol import types  # noqa: E402
from pygls.lsp.client import LanguageClient  # noqa: E402

from netdsl.lsp.document import analyze  # noqa: E402

SPECS = ["resnet152.yaml", "resnet152.net", "preact_resnet1001.yaml", "preact_resnet1001.net"]
GOALS_MS = {"resnet152": 100.0, "preact_resnet1001": 400.0}
NUMBER = re.compile(r"num_classes(?::\s*|=)(\d+)")


class Client(LanguageClient):
    """A pygls client that wakes a waiter when the diagnostics of a given (uri, version) arrive."""

    def __init__(self) -> None:
        super().__init__("bench-lsp", "1")
        self.arrived: dict[tuple[str, int | None], float] = {}
        self.event = asyncio.Event()

        @self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def _published(params: types.PublishDiagnosticsParams) -> None:
            self.arrived[(params.uri, params.version)] = time.perf_counter()
            self.event.set()

    async def wait(self, uri: str, version: int, timeout: float = 60.0) -> float:
        """When the diagnostics for this version arrived (perf_counter seconds)."""
        deadline = time.perf_counter() + timeout
        while (uri, version) not in self.arrived:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), max(0.0, deadline - time.perf_counter()))
        return self.arrived[(uri, version)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def number_edit(text: str, step: int) -> tuple[types.Range, str]:
    """The range of the last digit of the num_classes value and the digit to write there on this step (alternating)."""
    found = NUMBER.search(text)
    assert found is not None
    at = found.end(1) - 1
    line = text.count("\n", 0, at)
    character = at - (text.rfind("\n", 0, at) + 1)
    digit = int(text[at])
    new = str(digit if step % 2 == 0 else (digit + 1) % 10)
    return types.Range(start=types.Position(line=line, character=character), end=types.Position(line=line, character=character + 1)), new


async def edit_latencies(client: Client, uri: str, text: str, edits: int, first_version: int) -> list[float]:
    """Seconds from each didChange to the publishDiagnostics of its version; waits for each before the next."""
    out = []
    for step in range(1, edits + 1):
        version = first_version + step
        span, digit = number_edit(text, version - 1)  # alternates with the version: every edit changes the value
        change = types.TextDocumentContentChangePartial(range=span, text=digit)
        sent = time.perf_counter()
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version), content_changes=[change])
        )
        out.append(await client.wait(uri, version) - sent)
    return out


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]


def in_process(text: str, file: str, repeats: int) -> float:
    analyze(text, file)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        analyze(text, file)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def process(path: Path, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "netdsl", "check", str(path)], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def started() -> tuple[Client, int]:
    """A client talking to a fresh `netdsl lsp` process, and that process's id."""
    client = Client()
    await client.start_io(sys.executable, "-m", "netdsl", "lsp")
    server = client._server  # the asyncio subprocess
    assert server is not None
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities()))
    client.initialized(types.InitializedParams())
    return client, server.pid


async def stopped(client: Client) -> None:
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()


async def run(args: argparse.Namespace) -> None:
    client, pid = await started()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"netdsl lsp (pid {pid}); {args.edits} edits per spec, each waits for its diagnostics; times in ms; {os.cpu_count()} CPUs, load average {load}")
    print(f"{'spec':26s} {'layers':>6s} {'median':>8s} {'p90':>8s} {'analyze()':>10s} {'check proc':>11s} {'srv/analyze':>12s} {'proc/srv':>9s}  goal")
    verdicts = []
    for name in SPECS:
        path = ROOT / "specs" / name
        text = path.read_text()
        uri = path.as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id="yaml", version=1, text=text)))
        await client.wait(uri, 1)
        latencies = await edit_latencies(client, uri, text, args.edits, 1)
        client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
        local = in_process(text, str(path), args.repeats)
        proc = process(path, args.process_repeats)
        median = statistics.median(latencies)
        goal = GOALS_MS[path.stem]
        met = median * 1000 <= goal
        verdicts.append(met)
        layers = len(analyze(text, str(path)).graph.nodes)  # type: ignore[union-attr]
        print(
            f"{name:26s} {layers:6d} {median * 1000:8.1f} {p90(latencies) * 1000:8.1f} {local * 1000:10.1f} {proc * 1000:11.1f} "
            f"{median / local:11.2f}x {proc / median:8.1f}x  <= {goal:.0f}: {'met' if met else 'MISSED'}"
        )
    await stopped(client)
    # memory: a fresh server, after its first check of resnet152.yaml and after many edits
    client, pid = await started()
    path = ROOT / "specs" / "resnet152.yaml"
    text = path.read_text()
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id="yaml", version=1, text=text)))
    await client.wait(uri, 1)
    before = rss_kib(pid)
    start = time.perf_counter()
    readings, done = [], 0
    while done < args.memory_edits:  # a reading every quarter, to tell steady growth from a step
        step = min(max(1, args.memory_edits // 4), args.memory_edits - done)
        await edit_latencies(client, uri, text, step, 1 + done)
        done += step
        readings.append(f"{done}: {rss_kib(pid) / 1024:.1f}")
    after = rss_kib(pid)
    print(f"server memory (VmRSS, MiB) after N edits of resnet152.yaml: {', '.join(readings)}")
    growth = (after - before) / before * 100
    print(
        f"server memory (VmRSS), resnet152.yaml: {before / 1024:.1f} MiB after the first check, {after / 1024:.1f} MiB after "
        f"{args.memory_edits} edits ({time.perf_counter() - start:.1f} s): {growth:+.1f}%  goal <= 10%: {'met' if growth <= 10 else 'MISSED'}"
    )
    await stopped(client)
    print(f"goals: latency {'met' if all(verdicts) else 'MISSED'}, memory {'met' if growth <= 10 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--edits", type=int, default=50, help="edits per spec for the latency (default 50)")
    parser.add_argument("--memory-edits", type=int, default=1000, help="edits of resnet152 before the second memory reading (default 1000)")
    parser.add_argument("--repeats", type=int, default=11, help="in-process analyze() repeats (default 11)")
    parser.add_argument("--process-repeats", type=int, default=5, help="`netdsl check` process repeats (default 5)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
