#!/bin/sh
# Makes docs/pictures/lsp-neovim.png, a capture of a real editor: Neovim 0.10 with editors/neovim/netdsl.lua, running
# this checkout's `netdsl lsp` on specs/resnet18.yaml (inlay hints on every layer line, the hover of the `fc` layer),
# in xterm on a virtual X display. Neovim 0.10 comes from a Debian trixie chroot, made once, as root:
#   debootstrap --variant=minbase trixie /opt/trixie http://deb.debian.org/debian
#   chroot /opt/trixie apt-get install -y --no-install-recommends neovim xterm xvfb x11-apps fonts-dejavu-core fontconfig imagemagick pngquant
# Then, as root, from the checkout (after `make test` made .venv): sh docs/pictures/lsp-neovim.sh [hover|diagnostic] [OUT.png]
# `diagnostic` changes conv1's `k: 7` to `k: 300` (unsaved) to show the shape error instead.
set -eu
CHROOT=${CHROOT:-/opt/trixie}
DEMO=${1:-hover}
case $DEMO in hover) FIND='name: fc' ;; diagnostic) FIND='name: conv1' ;; *) echo "$0: hover or diagnostic, not '$DEMO'" >&2; exit 2 ;; esac
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
[ -f "$REPO/.venv/pyvenv.cfg" ] && [ -d "$CHROOT/usr/bin" ] || { echo "$0: needs $REPO/.venv (make test) and the chroot $CHROOT" >&2; exit 2; }
OUT=${2:-$REPO/docs/pictures/lsp-neovim.png}
PYHOME=$(sed -n 's/^home = //p' "$REPO/.venv/pyvenv.cfg")  # the venv's Python installation, e.g. ~/.pyenv/versions/3.11.7/bin
PYHOME=$(dirname "$PYHOME")
case $PYHOME in /?*) ;; *) echo "$0: cannot read the venv's Python home from $REPO/.venv/pyvenv.cfg" >&2; exit 2 ;; esac

# The checkout and the venv's Python at the same paths inside the chroot, plus what xterm and Xvfb need (the bind
# mounts stay for the next run; `umount` them in reverse order to remove the chroot).
for dir in /proc /sys /dev /dev/pts "$REPO" "$PYHOME"; do
  mountpoint -q "$CHROOT$dir" || { mkdir -p "$CHROOT$dir" && mount --bind "$dir" "$CHROOT$dir"; }
done

rm -f "$CHROOT/tmp/lsp-neovim.ready" "$CHROOT/tmp/lsp-neovim.xwd"
chroot "$CHROOT" env -i HOME=/root LANG=C.UTF-8 PATH="$REPO/.venv/bin:/usr/bin:/bin" DISPLAY=:77 \
  NETDSL_DEMO="$DEMO" NETDSL_FIND="$FIND" REPO="$REPO" sh -eu -c '
  Xvfb :77 -screen 0 1400x900x24 -br -nolisten tcp >/dev/null 2>&1 &
  xvfb=$!
  trap "kill \$xvfb 2>/dev/null" EXIT
  sleep 1
  cd "$REPO"
  xterm -T netdsl-demo -xrm "XTerm*allowTitleOps: false" -geometry 132x40+0+0 -bw 0 -fa "DejaVu Sans Mono" -fs 12 -bg "#14161b" -fg "#e0e2ea" -xrm "XTerm*cursorColor: #e0e2ea" \
    -e env TERM=xterm-256color COLORTERM=truecolor \
    nvim -n -i NONE -u editors/neovim/netdsl.lua -c "source docs/pictures/lsp-neovim.lua" specs/resnet18.yaml &
  xterm=$!
  for _ in $(seq 150); do [ -e /tmp/lsp-neovim.ready ] && break; sleep 0.2; done
  [ -e /tmp/lsp-neovim.ready ] || { echo "lsp-neovim.sh: Neovim did not get ready (is netdsl lsp working?)" >&2; exit 1; }
  xwd -name netdsl-demo -silent > /tmp/lsp-neovim.xwd
  kill $xterm
'
# xterm's window, scaled to 1200 px wide, 64 colours.
chroot "$CHROOT" convert /tmp/lsp-neovim.xwd -resize '1200x>' -strip /tmp/lsp-neovim.png
chroot "$CHROOT" pngquant --force --quality 70-95 --speed 1 --output /tmp/lsp-neovim-q.png 64 /tmp/lsp-neovim.png
cp "$CHROOT/tmp/lsp-neovim-q.png" "$OUT"
echo "$OUT: $(wc -c < "$OUT") bytes"
