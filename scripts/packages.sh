#!/usr/bin/env bash
# Builds the Debian packages of opsctl and relayd into target/debian with
# cargo-deb (installed when missing): release binaries, their man pages and
# opsctl's shell completions, relayd's systemd unit and example config.
#   scripts/packages.sh          build them
#   dpkg -i target/debian/opsctl_*.deb target/debian/relayd_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
    echo "scripts/packages.sh: installing cargo-deb" >&2
    cargo install cargo-deb --locked --version "^3" >&2
fi

cargo build --release --locked -p opsctl --bin opsctl -p relay --bin relayd
# What the packages carry besides the binaries, made by the binaries
# themselves from the same definitions as their --help.
assets=target/release/assets
rm -rf "$assets" && mkdir -p "$assets/man" "$assets/completions"
target/release/opsctl man --dir "$assets/man" >/dev/null
target/release/relayd --man > "$assets/man/relayd.1"
# Compressed, as Debian keeps man pages (cargo-deb leaves what is under
# target/release as it is).
gzip -9n "$assets"/man/*.1
for shell in bash zsh fish; do
    target/release/opsctl completions "$shell" > "$assets/completions/opsctl.$shell"
done
cargo deb --no-build --locked -p opsctl
cargo deb --no-build --locked -p relay
ls target/debian/*.deb
