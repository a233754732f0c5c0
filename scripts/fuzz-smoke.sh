#!/usr/bin/env bash
# Builds every cargo-fuzz target of the workspace and runs each briefly
# (RUNS executions or 60 s, whichever comes first),
# so a harness that no longer builds, or panics on its first inputs,
# fails CI. Longer runs: `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET` in the
# crate's fuzz/ folder (see its README).
#
#   scripts/fuzz-smoke.sh [RUNS]      (default 20000 executions per target)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20000}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
# cargo-fuzz needs nightly flags; the stable toolchain takes them this way.
export RUSTC_BOOTSTRAP=1
for dir in wire/fuzz nhrp/fuzz ike/fuzz node/fuzz; do
    for target in $(cd "$dir" && cargo fuzz list); do
        echo "fuzz: $dir $target ($runs runs)"
        (cd "$dir" && cargo fuzz run --release "$target" -- -runs="$runs" -max_total_time=60 -max_len=4096 2>&1 | tail -n 3)
    done
done
