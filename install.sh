#!/usr/bin/env sh
# Builds and installs pm3 (into cargo's bin directory, usually ~/.cargo/bin).
# On Linux with glibc the binary is linked statically as a position-independent executable
# (static-pie): no dynamic loader at start, so it starts about as fast as /bin/true, which is what
# makes `pm3 list` instant, while the kernel still places it at a random address (ASLR). Where the
# linker can pack relative relocations (binutils 2.38+, glibc 2.36+) it does, which makes the
# start-up relocation pass of a static-pie almost free.
set -eu
cd "$(dirname "$0")"
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  *-linux-gnu)
    flags="-C target-feature=+crt-static"
    if ld --help 2>/dev/null | grep -q pack-relative-relocs; then
      flags="$flags -C link-arg=-Wl,-z,pack-relative-relocs"
    fi
    RUSTFLAGS="${RUSTFLAGS:-} $flags" \
      exec cargo install --quiet --locked --force --path . --target "$host" "$@" ;;
  *)
    exec cargo install --quiet --locked --force --path . "$@" ;;
esac
