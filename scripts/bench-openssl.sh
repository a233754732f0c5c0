#!/usr/bin/env bash
# OpenSSL reference figures for the ESP transforms at 1424-byte blocks
# (a 1400-byte payload plus ESP trailer/IV), next to the criterion medians
# of `cargo bench -p dmvpn-agent --bench esp` when those exist.
#
# Usage: scripts/bench-openssl.sh [--run-criterion] [SECONDS]
#   --run-criterion  run the criterion bench first (release profile)
#   SECONDS          seconds per openssl measurement (default 3)
# The machine is shared and noisy: each OpenSSL figure is the median of 3 runs.
set -euo pipefail

cd "$(dirname "$0")/.."
run_criterion=0
if [[ "${1:-}" == "--run-criterion" ]]; then run_criterion=1; shift; fi
secs="${1:-3}"
target="${CARGO_TARGET_DIR:-target}"

command -v openssl >/dev/null || { echo "bench-openssl: openssl not found (apt-get install openssl)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench-openssl: python3 not found" >&2; exit 1; }

if [[ $run_criterion == 1 ]]; then
    cargo bench -p dmvpn-agent --bench esp >&2
fi

# speed KIND NAME [extra args] -> bytes/s, median of 3 runs
speed() {
    local kind="$1" name="$2"; shift 2
    for _ in 1 2 3; do
        openssl speed -mr -bytes 1424 -seconds "$secs" "$@" "$kind" "$name" 2>/dev/null |
            awk -F: '/^\+F:/ {print $NF}'
    done | sort -g | sed -n 2p
}

declare -A ossl
for c in aes-128-cbc aes-256-cbc aes-128-gcm aes-256-gcm des-ede3-cbc; do
    ossl[enc:$c]=$(speed -evp "$c")
    ossl[dec:$c]=$(speed -evp "$c" -decrypt)
done
ossl[enc:des-cbc]=$(speed -evp des-cbc -provider legacy -provider default)
ossl[dec:des-cbc]=$(speed -evp des-cbc -decrypt -provider legacy -provider default)
for h in sha1 sha256 md5; do
    ossl[hmac:$h]=$(speed -hmac "$h")
done

args=()
for k in "${!ossl[@]}"; do args+=("$k=${ossl[$k]}"); done

python3 - "$target/criterion/esp" "${args[@]}" <<'PY'
import json, os, sys
root = sys.argv[1]
o = {k: float(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
print("OpenSSL speed, 1424-byte blocks (MB/s = 10^6 bytes/s, median of 3):")
for k in sorted(o):
    print(f"  {k:22s} {o[k] / 1e6:10.1f} MB/s")

def combined(rate_c, rate_h):
    # Encrypt then MAC the same bytes: time adds up.
    return 1.0 / (1.0 / rate_c + 1.0 / rate_h) if rate_h else rate_c

cases = {
    "aes128-sha1": ("aes-128-cbc", "sha1"), "aes256-sha1": ("aes-256-cbc", "sha1"),
    "aes128-sha256": ("aes-128-cbc", "sha256"), "aes128-md5": ("aes-128-cbc", "md5"),
    "aes128-null": ("aes-128-cbc", None), "3des-sha1": ("des-ede3-cbc", "sha1"),
    "des-md5": ("des-cbc", "md5"), "aes128gcm16": ("aes-128-gcm", None),
    "aes256gcm16": ("aes-256-gcm", None),
}
print()
print("dmvpn ESP (criterion median, 1400-byte payload) vs OpenSSL cipher+HMAC on 1424 bytes:")
print(f"  {'transform':14s} {'op':4s} {'ours MB/s':>10s} {'openssl MB/s':>13s} {'ratio':>7s}")
missing = False
for name, (c, h) in cases.items():
    for op, d in (("seal", "enc"), ("open", "dec")):
        ref = combined(o[f"{d}:{c}"], o.get(f"hmac:{h}") if h else None)
        path = os.path.join(root, f"{op}_{name}", "new", "estimates.json")
        if not os.path.exists(path):
            missing = True
            print(f"  {name:14s} {op:4s} {'-':>10s} {ref / 1e6:13.1f} {'-':>7s}")
            continue
        ns = json.load(open(path))["median"]["point_estimate"]
        ours = 1400 / (ns * 1e-9)
        print(f"  {name:14s} {op:4s} {ours / 1e6:10.1f} {ref / 1e6:13.1f} {100 * ours / ref:6.0f}%")
if missing:
    print("(run with --run-criterion, or `cargo bench -p dmvpn-agent --bench esp`, for our figures)")
PY
