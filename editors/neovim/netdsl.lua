-- netdsl language server (`netdsl lsp`) for Neovim 0.10+: diagnostics, hover, inlay hints (each layer's output
-- shape), completion, go to definition, references, outline and formatting for netdsl specs.
-- Install: pip install 'netdsl[lsp]', then put this file in ~/.config/nvim/plugin/ (or `dofile()` it from init.lua).
-- `netdsl lsp` must be on PATH; set vim.g.netdsl_cmd = { '/path/to/venv/bin/netdsl', 'lsp' } otherwise.

-- `.net` files are netdsl's text format.
vim.filetype.add({ extension = { net = 'netdsl' } })

-- A YAML file is a netdsl spec or block library when one of its first lines is a top-level `netdsl:` key;
-- other YAML (CI workflows, compose files, ...) is left alone.
local function is_netdsl_yaml(buf)
  for _, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, 50, false)) do
    if line:match('^netdsl:') then
      return true
    end
  end
  return false
end

vim.api.nvim_create_autocmd('FileType', {
  group = vim.api.nvim_create_augroup('netdsl_lsp', { clear = true }),
  pattern = { 'yaml', 'netdsl' },
  callback = function(args)
    if vim.bo[args.buf].filetype == 'yaml' and not is_netdsl_yaml(args.buf) then
      return
    end
    vim.lsp.start({
      name = 'netdsl',
      cmd = vim.g.netdsl_cmd or { 'netdsl', 'lsp' },
      root_dir = vim.fs.root(args.buf, { 'pyproject.toml', '.git' }) or vim.fs.dirname(vim.api.nvim_buf_get_name(args.buf)),
    })
  end,
})

-- Show the server's inlay hints (`→ 64x56x56` after each layer) as soon as it attaches.
vim.api.nvim_create_autocmd('LspAttach', {
  group = vim.api.nvim_create_augroup('netdsl_lsp_attach', { clear = true }),
  callback = function(args)
    local client = vim.lsp.get_client_by_id(args.data.client_id)
    if client and client.name == 'netdsl' then
      vim.lsp.inlay_hint.enable(true, { bufnr = args.buf })
    end
  end,
})
