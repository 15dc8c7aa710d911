// netdsl for VS Code: starts `netdsl lsp` (stdio) for netdsl YAML specs, block libraries and `.net` files.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

/** The server command when `netdsl.command` is not set (package.json declares the same default). */
const DEFAULT_COMMAND = ['netdsl', 'lsp'];

/** A YAML document is a netdsl spec or block library when it has a top-level `netdsl:` key; other YAML gets no diagnostics. */
const NETDSL_YAML = /^netdsl:/m;

/** @type {LanguageClient | undefined} */
let client;

/** The client for the configured command: YAML files and `.net` files, on disk or unsaved. */
function createClient() {
  const configured = vscode.workspace.getConfiguration('netdsl').get('command', DEFAULT_COMMAND);
  const [command, ...args] = Array.isArray(configured) && configured.length > 0 ? configured : DEFAULT_COMMAND;
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'netdsl' },
      { scheme: 'untitled', language: 'netdsl' },
      { scheme: 'file', language: 'yaml' },
      { scheme: 'untitled', language: 'yaml' },
    ],
    middleware: {
      handleDiagnostics(uri, diagnostics, next) {
        const document = vscode.workspace.textDocuments.find((d) => d.uri.toString() === uri.toString());
        next(uri, document && document.languageId === 'yaml' && !NETDSL_YAML.test(document.getText()) ? [] : diagnostics);
      },
    },
  };
  return new LanguageClient('netdsl', 'netdsl', serverOptions, clientOptions);
}

async function activate(context) {
  client = createClient();
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration(async (event) => {
      if (event.affectsConfiguration('netdsl.command')) {
        await client?.stop();
        client = createClient();
        await client.start();
      }
    }),
    { dispose: () => client?.stop() },
  );
  await client.start();
}

function deactivate() {
  return client?.stop();
}

module.exports = { activate, deactivate, DEFAULT_COMMAND, NETDSL_YAML };
