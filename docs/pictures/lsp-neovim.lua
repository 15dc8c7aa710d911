-- Drives Neovim for docs/pictures/lsp-neovim.sh (loaded after editors/neovim/netdsl.lua): waits until `netdsl lsp` has
-- attached and sent its diagnostics and inlay hints, then, by $NETDSL_DEMO,
--   hover       puts the cursor on the layer type in the first line holding $NETDSL_FIND and opens the hover;
--   diagnostic  replaces `k: 7` with `k: 300` in that line (unsaved), so the shape error shows.
-- It writes /tmp/lsp-neovim.ready when the screen is ready to capture.
vim.o.showmode = false
vim.o.laststatus = 2
vim.o.signcolumn = 'yes'
vim.o.number = true
vim.diagnostic.config({ virtual_text = true, severity_sort = true })
vim.lsp.handlers['textDocument/hover'] = vim.lsp.with(vim.lsp.handlers.hover, { border = 'rounded', max_width = 100 })

local demo = os.getenv('NETDSL_DEMO') or 'hover'
local find = os.getenv('NETDSL_FIND') or 'name: fc'

local function ready()
  vim.fn.writefile({ demo }, '/tmp/lsp-neovim.ready')
end

local function act()
  local line = 1
  for i, text in ipairs(vim.api.nvim_buf_get_lines(0, 0, -1, false)) do
    if text:find(find, 1, true) then
      line = i
      break
    end
  end
  if demo == 'diagnostic' then
    local text = vim.api.nvim_buf_get_lines(0, line - 1, line, false)[1]
    vim.api.nvim_buf_set_lines(0, line - 1, line, false, { (text:gsub('k: 7', 'k: 300', 1)) })
    vim.api.nvim_win_set_cursor(0, { line, (text:find('k: 7', 1, true) or 1) + 2 })
    vim.defer_fn(ready, 3000)
  else
    local text = vim.api.nvim_buf_get_lines(0, line - 1, line, false)[1]
    vim.api.nvim_win_set_cursor(0, { line, (text:find('%- ') or 1) + 2 })
    vim.lsp.buf.hover()
    vim.defer_fn(ready, 1500)
  end
end

local tries = 0
local function wait_for_server()
  tries = tries + 1
  local clients = vim.lsp.get_clients({ name = 'netdsl', bufnr = 0 })
  if #clients > 0 and clients[1].initialized then
    vim.defer_fn(act, 2500) -- diagnostics and inlay hints arrive after didOpen
  elseif tries < 100 then
    vim.defer_fn(wait_for_server, 100)
  end
end
vim.api.nvim_create_autocmd('VimEnter', { once = true, callback = wait_for_server })
