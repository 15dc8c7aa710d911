"""A pytest-lsp client for `netdsl lsp` over stdio that keeps every publishDiagnostics with its version, and small
helpers to open, edit and query documents (tests/test_lsp.py, tests/test_lsp_robust.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

SERVER = [sys.executable, "-m", "netdsl", "lsp"]
WAIT_S = 10.0  # longest a test waits for the diagnostics of one version


class Client(LanguageClient):
    """A LanguageClient that records each publishDiagnostics (uri, version, diagnostics) in arrival order."""

    def __init__(self) -> None:
        from pygls.protocol import default_converter

        super().__init__(converter_factory=default_converter)
        self.published: list[types.PublishDiagnosticsParams] = []
        self.arrived = asyncio.Event()
        self.versions: dict[str, int] = {}
        self.texts: dict[str, str] = {}

    # -- documents ------------------------------------------------------------------------------------------------

    def open(self, uri: str, text: str, language: str = "yaml") -> None:
        self.versions[uri] = 1
        self.texts[uri] = text
        self.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))

    def replace_all(self, uri: str, text: str) -> int:
        """Send the whole new text (a full-document change); returns the new version."""
        self.versions[uri] += 1
        self.texts[uri] = text
        change = types.TextDocumentContentChangeWholeDocument(text=text)
        self.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]), content_changes=[change]
            )
        )
        return self.versions[uri]

    def edit(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> int:
        """An incremental change of the 0-based (line, character) range; returns the new version. The client's copy
        of the text is not kept for incremental edits (callers that need it track it themselves)."""
        self.versions[uri] += 1
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=start[0], character=start[1]), end=types.Position(line=end[0], character=end[1])), text=text
        )
        self.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]), content_changes=[change]
            )
        )
        return self.versions[uri]

    def close(self, uri: str) -> None:
        self.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))

    async def diagnostics_of(self, uri: str, version: int | None = None, timeout: float = WAIT_S) -> Sequence[types.Diagnostic]:
        """The diagnostics published for this version of the document (default: the newest version sent)."""
        version = self.versions[uri] if version is None else version
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for params in reversed(self.published):
                if params.uri == uri and params.version == version:
                    return params.diagnostics
            self.arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"no diagnostics for {uri} version {version} within {timeout} s")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    # -- requests -------------------------------------------------------------------------------------------------

    def _doc(self, uri: str) -> types.TextDocumentIdentifier:
        return types.TextDocumentIdentifier(uri=uri)

    async def hover_at(self, uri: str, line: int, character: int) -> types.Hover | None:
        return await self.text_document_hover_async(types.HoverParams(text_document=self._doc(uri), position=types.Position(line=line, character=character)))

    async def inlay_hints(self, uri: str, lines: int) -> Sequence[types.InlayHint]:
        span = types.Range(start=types.Position(line=0, character=0), end=types.Position(line=lines, character=0))
        return await self.text_document_inlay_hint_async(types.InlayHintParams(text_document=self._doc(uri), range=span)) or []


def _record(client: Client, params: types.PublishDiagnosticsParams) -> None:
    client.diagnostics[params.uri] = params.diagnostics
    client.published.append(params)
    client.arrived.set()


def make_client() -> Client:
    client = Client()
    register_lsp_features(client, {**DEFAULT_CLIENT_FEATURES, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: _record})
    return client


CONFIG = ClientServerConfig(server_command=SERVER, client_factory=make_client)


async def start(client: LanguageClient) -> None:
    await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))


def apply_edits(text: str, edits: Sequence[types.TextEdit]) -> str:
    """The text after the edits (0-based ranges in code points; tests keep to text where UTF-16 units agree)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(p: types.Position) -> int:
        return starts[p.line] + p.character if p.line < len(lines) else len(text)

    for e in sorted(edits, key=lambda e: (e.range.start.line, e.range.start.character), reverse=True):
        text = text[: offset(e.range.start)] + e.new_text + text[offset(e.range.end) :]
    return text
