#!/usr/bin/env bash
# Packets per second through the user-space tunnel between two network
# namespaces (plain GRE and GRE/ESP aes128-sha1), release build, as root.
# Sender, both data planes and the receiver share this machine's cores, so
# the figure is end-to-end on one box, not per-core forwarding capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "bench-netns: needs root (namespaces, TUN, raw sockets)" >&2; exit 1; }
for i in 1 2 3; do
    cargo test --release -q -p dmvpn-agent --test netns_dataplane throughput -- --nocapture --test-threads=1 2>&1 |
        grep -oE '(plain GRE|ESP aes128-sha1): .*'
done
