#!/usr/bin/env bash
# Builds the Debian package target/debian/dmvpn_VERSION_ARCH.deb: the three
# programs from the `dist` profile (release code, stripped, no debug info),
# the systemd unit, man pages and bash/zsh/fish completions generated from
# the programs' own command-line definitions, the docs and examples, and
# /etc/dmvpn/dmvpnd.toml (mode 0600) to edit. Needs cargo-deb
# (`cargo install --locked cargo-deb`, installed here if missing).
#
#   scripts/package.sh        prints the path of the .deb
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
target=${CARGO_TARGET_DIR:-target}
cargo build --profile dist -p dmvpn-agent -p dmvpn-ctl -p dmvpn-lab >&2
docs="$target/dist/docs"
rm -rf "$docs"
for bin in dmvpnd dmvpnctl dmvpn-lab; do
    DMVPN_GENERATE_DOCS="$docs" "$target/dist/$bin"
done
cargo deb -p dmvpn-agent --profile dist --no-build --no-strip
