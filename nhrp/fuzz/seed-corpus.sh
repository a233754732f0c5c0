#!/bin/sh
# Seeds fuzz/corpus/{parse,engine} with every NHRP packet of the golden
# captures (one file per packet) plus the malformed capture's frame.
set -e
cd "$(dirname "$0")/.."
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}" cargo run -q --example seed_corpus -- fuzz/corpus tests/data/*.pcap tests/data/*.pcapng
