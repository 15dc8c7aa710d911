"""`netdsl lsp`: the language server (pygls). document.py is the front end's view of one document; each feature has its own module; server.py wires them to LSP."""
