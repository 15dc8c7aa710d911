"""`netdsl lsp`: a Language Server Protocol server over stdio (pygls) for YAML specs, block libraries and .net files.

The front end stays loaded: each edit re-checks the document in one worker thread (edits that arrive meanwhile are
coalesced into one more check of the newest text), then publishes its diagnostics. Requests (hover, inlay hints, ...)
answer from the newest analysis, waiting for a check under way. Nothing a document holds can stop the server: every
failure of the front end on it becomes a diagnostic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls import uris
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.workspace.text_document import TextDocument

from netdsl.errors import Diagnostic, Loc
from netdsl.lang.formats import format_of
from netdsl.lsp import actions, completion, navigation, outline
from netdsl.lsp.document import Analysis, Pos, analyze, word_range
from netdsl.lsp.hover import hover
from netdsl.lsp.inlay import inlay_hints
from netdsl.version import __version__

log = logging.getLogger("netdsl.lsp")
_LSP_LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _lsp_lines(self: TextDocument) -> tuple[str, ...]:
    """A document's lines as LSP counts them: broken at \\n, \\r\\n and \\r only. pygls 2.1 uses str.splitlines, which
    also breaks at \\x0b, \\x0c, \\x1c-\\x1e, \\x85 and \\u2028/9, so an edit below such a character landed a line off."""
    return tuple(m.group(0) for m in _LSP_LINES.finditer(self.source))


TextDocument.lines = property(_lsp_lines)  # type: ignore[assignment]


class _Protocol(LanguageServerProtocol):
    """pygls 2.1 keeps the future of each notification its built-in (generator) handlers run, under a fresh id that
    nothing removes: ~2 KiB per keystroke, forever. Each is dropped here once it is done."""

    def _handle_notification(self, method_name: str, params: Any) -> None:
        pending = set(self._request_futures)
        super()._handle_notification(method_name, params)
        for key in set(self._request_futures) - pending:
            self._request_futures[key].add_done_callback(partial(self._forget, key))

    def _forget(self, key: str | int, _: object) -> None:
        self._request_futures.pop(key, None)


WAIT_S = 5.0  # longest a request waits for the check of the newest text before it answers from the previous one
SOURCE = "netdsl"


class NetdslServer(LanguageServer):
    """The server's state: the newest analysis of each open document and the check under way for it."""

    def __init__(self) -> None:
        super().__init__("netdsl", __version__, protocol_cls=_Protocol, text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.analyses: dict[str, Analysis] = {}
        self.checks: dict[str, asyncio.Future[Any]] = {}
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netdsl-check")
        self.inlay_params = False  # initializationOptions {"inlayHints": {"parameters": true}}


server = NetdslServer()


def uri_path(uri: str) -> str:
    """The file a document URI names (imports are read relative to it); a made-up path for an unsaved one."""
    path = uris.to_fs_path(uri) if uri.startswith("file:") else None
    if path:
        return path
    name = unquote(urlparse(uri).path).rsplit("/", 1)[-1] or "untitled.yaml"
    return os.path.join(os.getcwd(), name)


def path_uri(path: str) -> str:
    return str(uris.from_fs_path(os.path.abspath(path)))


# -- checking -------------------------------------------------------------------------------------------------------


def schedule(ls: NetdslServer, uri: str) -> None:
    """Check the document's newest text soon: start a check, or let the one under way check again when it ends."""
    running = ls.checks.get(uri)
    if running is None or running.done():
        ls.checks[uri] = asyncio.ensure_future(_check_until_current(ls, uri))


async def _check_until_current(ls: NetdslServer, uri: str) -> None:
    loop = asyncio.get_running_loop()
    while True:
        doc = ls.workspace.text_documents.get(uri)
        if doc is None:
            return
        version, text = doc.version, doc.source
        analysis = await loop.run_in_executor(ls.worker, _analyze_safely, text, uri_path(uri))
        if uri not in ls.workspace.text_documents:
            return
        ls.analyses[uri] = analysis
        ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, version=version, diagnostics=lsp_diagnostics(ls, analysis)))
        if _can_refresh_hints(ls):  # the hints asked for while the check ran came from the text before it (Helix asks once)
            ls.workspace_inlay_hint_refresh(None)
        newest = ls.workspace.text_documents.get(uri)
        if newest is None or newest.version == version:
            return


def _can_refresh_hints(ls: NetdslServer) -> bool:
    workspace = ls.client_capabilities.workspace
    hints = workspace.inlay_hint if workspace else None
    return bool(hints and hints.refresh_support)


def _analyze_safely(text: str, file: str) -> Analysis:
    try:
        return analyze(text, file)
    except Exception as exc:  # a bug in the front end must not end the editor's session: say so where it shows
        log.exception("checking %s failed", file)
        out = Analysis(file, text, format_of(file))
        out.diagnostics = [Diagnostic(Loc(file, 1, 1), f"netdsl could not check this document ({type(exc).__name__}: {exc}); please report it")]
        return out


async def current(ls: NetdslServer, uri: str) -> Analysis | None:
    """The analysis of the document's newest text (or the previous one if the check takes longer than WAIT_S)."""
    running = ls.checks.get(uri)
    if running is not None and not running.done():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(running), WAIT_S)
    if uri not in ls.analyses:
        doc = ls.workspace.text_documents.get(uri)
        if doc is None:
            return None
        ls.analyses[uri] = await asyncio.get_running_loop().run_in_executor(ls.worker, _analyze_safely, doc.source, uri_path(uri))
    return ls.analyses[uri]


# -- positions --------------------------------------------------------------------------------------------------------


def to_client(ls: NetdslServer, a: Analysis, at: Pos) -> types.Position:
    lines = a.lines
    line = max(0, at[0] - 1)
    if line >= len(lines):
        return types.Position(line=len(lines) - 1 if lines else 0, character=ls.workspace.position_codec.client_num_units(lines[-1]) if lines else 0)
    return ls.workspace.position_codec.position_to_client_units(lines, types.Position(line=line, character=max(0, at[1] - 1)))


def client_range(ls: NetdslServer, a: Analysis, span: tuple[Pos, Pos]) -> types.Range:
    return types.Range(start=to_client(ls, a, span[0]), end=to_client(ls, a, span[1]))


def from_client(ls: NetdslServer, a: Analysis, position: types.Position) -> Pos:
    server_pos = ls.workspace.position_codec.position_from_client_units(a.lines, types.Position(line=position.line, character=position.character))
    return (server_pos.line + 1, server_pos.character + 1)


# -- diagnostics ----------------------------------------------------------------------------------------------------


def lsp_diagnostics(ls: NetdslServer, a: Analysis) -> list[types.Diagnostic]:
    out = []
    for d in a.diagnostics:
        at, related = _place(a, d)
        message = d.message if d.loc.file == a.file or d.loc.line == 0 else f"{os.path.basename(d.loc.file)}:{d.loc.line}:{d.loc.col}: {d.message}"
        if d.note:
            message += f" ({d.note})"
        out.append(
            types.Diagnostic(
                range=client_range(ls, a, word_range(a.lines, at)),
                message=message,
                severity=types.DiagnosticSeverity.Error,
                source=SOURCE,
                code=d.kind or None,
                related_information=related,
            )
        )
    return out


def _place(a: Analysis, d: Diagnostic) -> tuple[Pos, list[types.DiagnosticRelatedInformation] | None]:
    """Where in this document a diagnostic shows: its own place, or for one in another file (an imported library) the
    use of the block it is in or the import that reads the file; the other file's place goes in related information."""
    if d.loc.line == 0:
        return (1, 1), None
    if d.loc.file == a.file:
        return (d.loc.line, d.loc.col), None
    here = (1, 1)
    for part in d.note.split("; "):  # "in block 'x' used at FILE:L:C", the innermost use first
        where = part.rpartition(" used at ")[2] if " used at " in part else ""
        rest, _, col = where.rpartition(":")
        file, _, line = rest.rpartition(":")
        if file == a.file and line.isdigit() and col.isdigit():
            here = (int(line), int(col))
            break
    else:
        here = _import_of(a, d.loc.file) or here
    theirs = types.Location(uri=path_uri(d.loc.file), range=types.Range(start=_zero(d.loc), end=_zero(d.loc)))
    return here, [types.DiagnosticRelatedInformation(location=theirs, message=d.message)]


def _import_of(a: Analysis, file: str) -> Pos | None:
    from netdsl.lang.yaml_tree import YList, YMap

    imports = a.tree.get("import") if isinstance(a.tree, YMap) else None
    if not isinstance(imports, YList):
        return None
    stem = os.path.splitext(os.path.basename(file))[0]
    for name, loc in zip(imports, imports.item_locs):
        if isinstance(name, str) and (name == stem or os.path.basename(name) == os.path.basename(file)):
            return (loc.line, loc.col)
    return None


def _zero(loc: Loc) -> types.Position:
    return types.Position(line=max(0, loc.line - 1), character=max(0, loc.col - 1))


# -- document sync --------------------------------------------------------------------------------------------------


@server.feature(types.INITIALIZE)
def initialize(ls: NetdslServer, params: types.InitializeParams) -> None:
    options = params.initialization_options if isinstance(params.initialization_options, dict) else {}
    hints = options.get("inlayHints")
    ls.inlay_params = bool(hints.get("parameters")) if isinstance(hints, dict) else False


@server.feature(types.INITIALIZED)
def initialized(ls: NetdslServer, params: types.InitializedParams) -> None:
    """Import every layer family and read the schema now, not at the first completion (~200 ms)."""
    threading.Thread(target=completion.warm, name="netdsl-warm", daemon=True).start()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: NetdslServer, params: types.DidOpenTextDocumentParams) -> None:
    schedule(ls, params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: NetdslServer, params: types.DidChangeTextDocumentParams) -> None:
    schedule(ls, params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: NetdslServer, params: types.DidSaveTextDocumentParams) -> None:
    schedule(ls, params.text_document.uri)  # an imported library may have changed on disk


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: NetdslServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.analyses.pop(uri, None)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


# -- features -------------------------------------------------------------------------------------------------------


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def on_hover(ls: NetdslServer, params: types.HoverParams) -> types.Hover | None:
    a = await current(ls, params.text_document.uri)
    if a is None:
        return None
    found = hover(a, from_client(ls, a, params.position))
    if found is None:
        return None
    text, span = found
    return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text), range=client_range(ls, a, span))


@server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions(resolve_provider=False))
async def on_inlay_hint(ls: NetdslServer, params: types.InlayHintParams) -> list[types.InlayHint]:
    a = await current(ls, params.text_document.uri)
    if a is None:
        return []
    hints = inlay_hints(a, params.range.start.line + 1, params.range.end.line + 1, params=ls.inlay_params)
    return [types.InlayHint(position=to_client(ls, a, h.at), label=h.label, kind=types.InlayHintKind.Type, padding_left=True) for h in hints]


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
async def on_formatting(ls: NetdslServer, params: types.DocumentFormattingParams) -> list[types.TextEdit] | None:
    a = await current(ls, params.text_document.uri)
    if a is None:
        return None
    formatted = actions.formatted(a)
    if formatted is None or formatted == a.text:
        return [] if formatted is not None else None
    lines = a.lines
    end = types.Position(line=len(lines) - 1, character=ls.workspace.position_codec.client_num_units(lines[-1]))
    return [types.TextEdit(range=types.Range(start=types.Position(line=0, character=0), end=end), new_text=formatted)]


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
async def on_code_action(ls: NetdslServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    a = await current(ls, params.text_document.uri)
    if a is None:
        return []
    out = []
    for diagnostic in params.context.diagnostics:
        if diagnostic.source != SOURCE:
            continue
        lines = a.lines
        start = from_client(ls, a, diagnostic.range.start)
        end = from_client(ls, a, diagnostic.range.end)
        fix = actions.quick_fix(diagnostic.message, lines, (start, end))
        if fix is None:
            continue
        title, replacement = fix
        edit = types.TextEdit(range=diagnostic.range, new_text=replacement)
        out.append(
            types.CodeAction(
                title=title,
                kind=types.CodeActionKind.QuickFix,
                diagnostics=[diagnostic],
                is_preferred=True,
                edit=types.WorkspaceEdit(changes={params.text_document.uri: [edit]}),
            )
        )
    return out


@server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=completion.TRIGGERS))
async def on_completion(ls: NetdslServer, params: types.CompletionParams) -> types.CompletionList:
    a = await current(ls, params.text_document.uri)
    doc = ls.workspace.text_documents.get(params.text_document.uri)
    if a is None or doc is None:
        return types.CompletionList(is_incomplete=False, items=[])
    lines = doc.lines  # the text as typed so far, which may be newer than the last analysis
    server_pos = ls.workspace.position_codec.position_from_client_units(lines, params.position)
    items = completion.complete(a, doc.source, (server_pos.line + 1, server_pos.character + 1))
    return types.CompletionList(
        is_incomplete=False,
        items=[
            types.CompletionItem(
                label=c.label,
                kind=getattr(types.CompletionItemKind, c.kind, types.CompletionItemKind.Text),
                detail=c.detail or None,
                documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=c.doc) if c.doc else None,
                insert_text=c.insert or None,
                sort_text=c.sort or None,
            )
            for c in items
        ],
    )


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
async def on_definition(ls: NetdslServer, params: types.DefinitionParams) -> list[types.Location]:
    a = await current(ls, params.text_document.uri)
    if a is None:
        return []
    return [_location(ls, a, params.text_document.uri, target) for target in navigation.definition(a, from_client(ls, a, params.position))]


@server.feature(types.TEXT_DOCUMENT_REFERENCES)
async def on_references(ls: NetdslServer, params: types.ReferenceParams) -> list[types.Location]:
    a = await current(ls, params.text_document.uri)
    if a is None:
        return []
    found = navigation.references(a, from_client(ls, a, params.position), params.context.include_declaration)
    return [_location(ls, a, params.text_document.uri, target) for target in found]


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
async def on_document_symbol(ls: NetdslServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    a = await current(ls, params.text_document.uri)
    if a is None:
        return []

    def convert(s: outline.Symbol) -> types.DocumentSymbol:
        return types.DocumentSymbol(
            name=s.name,
            detail=s.detail or None,
            kind=getattr(types.SymbolKind, s.kind, types.SymbolKind.Object),
            range=client_range(ls, a, s.span),
            selection_range=client_range(ls, a, s.selection),
            children=[convert(c) for c in s.children],
        )

    return [convert(s) for s in outline.symbols(a)]


def _location(ls: NetdslServer, a: Analysis, uri: str, target: navigation.Target) -> types.Location:
    """A place in this document (converted with its lines) or in another file (a library; read to convert)."""
    if target.file == a.file:
        return types.Location(uri=uri, range=client_range(ls, a, target.span))
    try:
        from netdsl.lang.files import read_text

        other = Analysis(target.file, read_text(target.file), format_of(target.file))
        span = client_range(ls, other, target.span)
    except Exception:  # an unreadable library: point at its place without converting units
        span = types.Range(
            start=types.Position(line=target.span[0][0] - 1, character=target.span[0][1] - 1),
            end=types.Position(line=target.span[1][0] - 1, character=target.span[1][1] - 1),
        )
    return types.Location(uri=path_uri(target.file), range=span)


def serve() -> None:
    """Run the server on stdin/stdout until the client says exit."""
    server.start_io()
