#!/usr/bin/env bash
# Throughput between two network namespaces joined by one veth pair, as root:
#   veth       plain veth (the ceiling)
#   gre        dmvpnd, GRE on TUN, no ESP
#   aes-sha1   dmvpnd, GRE in ESP transport mode, esp-aes 128 + esp-sha-hmac
#   gcm        dmvpnd, GRE in ESP transport mode, esp-gcm 128
#   aes-sha1-udp, gcm-udp
#              the same in ESP-in-UDP (port 4500, as strongSwan's libipsec
#              always sends), with dmvpnd's default settings (UDP GSO/GRO)
#   aes-sha1-kernel, gcm-kernel
#              plain ESP sent through the kernel's IP output for every
#              packet (DMVPND_DIRECT_SEND=0) instead of the packet socket
#   aes-sha1-w1, aes-sha1-w2, gcm-w1, gcm-w2 (and -udp-w1, -udp-w2)
#              the same with `workers = 1` or `2` forwarding threads per
#              dmvpnd and 4 parallel TCP streams (flows spread over the
#              TUN queues; one peer's packets in are one worker's)
#   aes-sha1-udp-nogso, gcm-udp-nogso
#              ESP-in-UDP with DMVPND_UDP_OFFLOAD=0: one datagram per
#              message each way, as for a capture that is to be decrypted
#   ss-aes-sha1, ss-gcm
#              strongSwan charon with kernel-libipsec (user-space ESP, tunnel
#              mode, UDP 4500), aes128-sha1 and aes128gcm16
# Each case: iperf3 TCP (receiver Gbit/s) and iperf3 UDP at a fixed datagram
# size sent as fast as possible (received Gbit/s and loss), plus the tunnel
# daemons' CPU (utime+stime of both processes over the run, in % of one
# core) and peak RSS (largest VmHWM of the two). dmvpnd uses static maps and
# manual SAs (no IKE); the tunnel MTU is 1400 for both implementations.
# iperf3, both data planes and the receivers share this machine's cores.
#
# Usage: scripts/bench-throughput.sh [ROUNDS]   (default 1; with more, the
#   per-round tables are followed by a table of medians)
# Environment: DMVPND=path (default: release build via cargo), TIME (iperf3
#   seconds per test, default 10), UDP_LEN (datagram payload, default 1372:
#   1400-byte IP packets, the tunnel MTU, so nothing fragments),
#   CASES (space-separated subset of the case names above).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench-throughput: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (namespaces, TUN, raw sockets)"
for t in ip iperf3 swanctl awk; do
    command -v "$t" >/dev/null || die "$t not found (apt-get install iproute2 iperf3 strongswan-swanctl)"
done
CHARON=/usr/lib/ipsec/charon
[[ -x $CHARON ]] || die "$CHARON not found (apt-get install strongswan-charon libcharon-extra-plugins libstrongswan-standard-plugins)"

ROUNDS=${1:-1}
TIME=${TIME:-10}
UDP_LEN=${UDP_LEN:-1372}
CASES=${CASES:-"veth gre aes-sha1 gcm aes-sha1-udp aes-sha1-udp-nogso ss-aes-sha1 ss-gcm"}
if [[ -z ${DMVPND:-} ]]; then
    cargo build -q --release -p dmvpn-agent --bin dmvpnd
    DMVPND="${CARGO_TARGET_DIR:-target}/release/dmvpnd"
fi
[[ -x $DMVPND ]] || die "no dmvpnd at $DMVPND"
DMVPND=$(readlink -f "$DMVPND")
HZ=$(getconf CLK_TCK)

A="tp$$a"
B="tp$$b"
DIR=$(mktemp -d /tmp/bench-throughput.XXXXXX)
PIDS=()

stop_pids() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    trap - EXIT INT TERM
    stop_pids
    # The iperf3 server is daemonized (-D), so it is not in PIDS.
    [[ -s $DIR/iperf3.pid ]] && kill "$(cat "$DIR/iperf3.pid")" 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Topology: A (172.16.0.1) --veth-- B (172.16.0.2); inner /32s on lo for
# strongSwan's selectors.
ip netns add "$A"
ip netns add "$B"
ip link add "tp$$x" type veth peer name "tp$$y"
ip link set "tp$$x" netns "$A"
ip link set "tp$$y" netns "$B"
for n in 1 2; do
    ns=$A dev="tp$$x"
    [[ $n == 2 ]] && ns=$B dev="tp$$y"
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "172.16.0.$n/24" dev "$dev"
    ip -n "$ns" addr add "10.96.$n.1/32" dev lo
    ip -n "$ns" link set "$dev" up
done
ip netns exec "$B" iperf3 -s -D -I "$DIR/iperf3.pid" >/dev/null
while [[ ! -s $DIR/iperf3.pid ]]; do sleep 0.1; done

wait_ping() { # ns src dst
    local i
    for i in $(seq 100); do
        ip netns exec "$1" ping -n -q -c 1 -W 1 -I "$2" "$3" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "no connectivity $2 -> $3 in $1 (logs in $DIR)"
}

# --- dmvpnd -----------------------------------------------------------------
dmvpnd_config() { # n peer transform
    local n=$1 peer=$2 ts=$3 i o ki ko klen alen manual="" udp=false workers=""
    if [[ $n == 1 ]]; then i=0x1001 o=0x2001 ki=11 ko=22; else i=0x2001 o=0x1001 ki=22 ko=11; fi
    if [[ $ts =~ -w([0-9]+)$ ]]; then workers=${BASH_REMATCH[1]} ts=${ts%-w*}; fi
    local base=${ts%-nogso}
    [[ $base == *-udp ]] && udp=true
    base=${base%-udp} base=${base%-kernel}
    case $base in
        aes-sha1) klen=16 alen=20 manual='["esp-aes 128", "esp-sha-hmac"]' ;;
        gcm) klen=20 alen=0 manual='["esp-gcm 128"]' ;;  # key + 4-byte salt
    esac
    rep() { local s="" k; for ((k = 0; k < $2; k++)); do s+=$1; done; echo "$s"; }
    cat <<EOF
[control]
socket = "$DIR/dmvpnd$n.sock"
[log]
filter = "warn"
[node]
name = "n$n"
role = "spoke"
EOF
    [[ -n $workers ]] && echo "workers = $workers"
    if [[ -n $manual ]]; then
        cat <<EOF
[[ipsec.manual_sa]]
peer = "172.16.0.$peer"
transforms = $manual
mode = "transport"
udp_encapsulation = $udp
[ipsec.manual_sa.inbound]
spi = $i
encryption_key = "$(rep "$ki" $klen)"
EOF
        ((alen > 0)) && echo "authentication_key = \"$(rep "$ki" $alen)\""
        cat <<EOF
[ipsec.manual_sa.outbound]
spi = $o
encryption_key = "$(rep "$ko" $klen)"
EOF
        ((alen > 0)) && echo "authentication_key = \"$(rep "$ko" $alen)\""
    fi
    cat <<EOF
[[tunnel]]
name = "Tunnel0"
address = "192.168.1.$n/24"
mtu = 1400
source = "172.16.0.$n"
destination = "172.16.0.$peer"
mode = "gre"
EOF
}

start_dmvpnd() { # transform
    local n peer ns env=()
    # Unset variables leave dmvpnd's defaults (also for an older DMVPND=).
    [[ $1 == *-nogso ]] && env+=(DMVPND_UDP_OFFLOAD=0)
    [[ $1 == *-kernel ]] && env+=(DMVPND_DIRECT_SEND=0)
    for n in 1 2; do
        peer=$((3 - n)) ns=$A
        [[ $n == 2 ]] && ns=$B
        dmvpnd_config $n $peer "$1" >"$DIR/dmvpnd$n.toml"
        ip netns exec "$ns" env -u DMVPND_UDP_OFFLOAD -u DMVPND_DIRECT_SEND "${env[@]}" "$DMVPND" --config "$DIR/dmvpnd$n.toml" \
            2>"$DIR/dmvpnd$n.log" &
        PIDS+=($!)
    done
    wait_ping "$A" 192.168.1.1 192.168.1.2
    SRC=192.168.1.1 DST=192.168.1.2
}

# --- strongSwan charon + kernel-libipsec --------------------------------------
start_charon() { # esp proposal
    local n peer ns d
    for n in 1 2; do
        peer=$((3 - n)) ns=$A d="$DIR/ss$n"
        [[ $n == 2 ]] && ns=$B
        mkdir -p "$d/run"
        cat >"$d/strongswan.conf" <<EOF
charon {
  load_modular = no
  load = random nonce openssl pem pkcs1 x509 pubkey hmac sha1 sha2 aes gcm kdf kernel-libipsec kernel-netlink socket-default vici
  install_routes = yes
  plugins {
    vici { socket = unix://$d/vici.sock }
  }
  filelog {
    log { path = $d/charon.log
          default = 1 }
  }
}
EOF
        cat >"$d/swanctl.conf" <<EOF
connections {
  bench {
    version = 1
    local_addrs = 172.16.0.$n
    remote_addrs = 172.16.0.$peer
    proposals = aes128-sha1-modp2048
    local { auth = psk
            id = 172.16.0.$n }
    remote { auth = psk
             id = 172.16.0.$peer }
    children {
      bench {
        local_ts = 10.96.$n.1/32
        remote_ts = 10.96.$peer.1/32
        mode = tunnel
        esp_proposals = $1
      }
    }
  }
}
secrets {
  ike-bench {
    id-1 = 172.16.0.1
    id-2 = 172.16.0.2
    secret = "throughput-bench-psk"
  }
}
EOF
        ip netns exec "$ns" sh -c "mount --bind $d/run /run && exec env STRONGSWAN_CONF=$d/strongswan.conf $CHARON" \
            >/dev/null 2>&1 &
        PIDS+=($!)
    done
    for n in 1 2; do
        d="$DIR/ss$n"
        for _ in $(seq 100); do [[ -S $d/vici.sock ]] && break; sleep 0.1; done
        [[ -S $d/vici.sock ]] || die "charon $n did not start (log: $d/charon.log)"
        # The socket may appear before charon answers on it: retry briefly.
        for k in $(seq 20); do
            swanctl --load-all --file "$d/swanctl.conf" --uri "unix://$d/vici.sock" >"$d/load.log" 2>&1 && break
            ((k == 20)) && die "swanctl --load-all failed: $(tail -n 5 "$d/load.log")"
            sleep 0.25
        done
    done
    swanctl --initiate --child bench --uri "unix://$DIR/ss1/vici.sock" >"$DIR/ss1/initiate.log" 2>&1 ||
        die "swanctl --initiate failed: $(tail -n 5 "$DIR/ss1/initiate.log")"
    wait_ping "$A" 10.96.1.1 10.96.2.1
    SRC=10.96.1.1 DST=10.96.2.1
}

# --- measurement --------------------------------------------------------------
ticks() { # pids... -> summed utime+stime
    local s=0 p
    for p in "$@"; do s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo $s
}
hwm_mb() { # pids... -> largest VmHWM in MB
    local m=0 p v
    for p in "$@"; do
        v=$(awk '/^VmHWM/ {print $2}' "/proc/$p/status")
        ((v > m)) && m=$v
    done
    awk -v k="$m" 'BEGIN {printf "%.0f", k / 1024}'
}
# Runs one iperf3 test, prints "Gbit/s loss% cpu%".
iperf() { # extra iperf3 args...
    local t0 t1 w0 w1 out gbps loss cpu
    t0=$(ticks "${PIDS[@]}")
    w0=$(date +%s%N)
    out=$(ip netns exec "$A" iperf3 -c "$DST" -B "$SRC" -t "$TIME" -f m "$@" 2>&1) ||
        die "iperf3 failed: $out"
    w1=$(date +%s%N)
    t1=$(ticks "${PIDS[@]}")
    gbps=$(awk '/receiver$/ {for (i = 1; i < NF; i++) if ($(i + 1) == "Mbits/sec") v = $i / 1000} END {printf "%.2f", v}' <<<"$out")
    loss=$(awk '/receiver$/ {for (i = 1; i <= NF; i++) if ($i ~ /^\(.*%\)$/) {gsub(/[()%]/, "", $i); v = $i}} END {printf "%.1f", v}' <<<"$out")
    if ((${#PIDS[@]} > 0)); then
        cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v w=$((w1 - w0)) 'BEGIN {printf "%.0f", 100 * d / hz / (w / 1e9)}')
    else
        cpu=-
    fi
    echo "$gbps $loss $cpu"
}

RESULTS="$DIR/results"
: >"$RESULTS"
run_case() { # round name
    local tcp udp rss
    case $2 in
        veth) SRC=172.16.0.1 DST=172.16.0.2 ;;
        gre) start_dmvpnd none ;;
        aes-sha1) start_dmvpnd aes-sha1 ;;
        gcm) start_dmvpnd gcm ;;
        aes-sha1-udp | gcm-udp | aes-sha1-udp-nogso | gcm-udp-nogso | aes-sha1-kernel | gcm-kernel | *-w[0-9]*)
            start_dmvpnd "$2" ;;
        ss-aes-sha1) start_charon aes128-sha1 ;;
        ss-gcm) start_charon aes128gcm16 ;;
        *) die "unknown case $2" ;;
    esac
    local streams=()
    [[ $2 == *-w[0-9]* ]] && streams=(-P 4)
    tcp=$(iperf "${streams[@]}")
    udp=$(iperf -u -b 0 -l "$UDP_LEN" "${streams[@]}")
    rss=-
    ((${#PIDS[@]} > 0)) && rss=$(hwm_mb "${PIDS[@]}")
    stop_pids
    # round case tcp_gbps tcp_cpu udp_gbps udp_loss udp_cpu rss_mb
    read -r tg _ tc <<<"$tcp"
    read -r ug ul uc <<<"$udp"
    echo "$1 $2 $tg $tc $ug $ul $uc $rss" >>"$RESULTS"
}

# Prints a table from lines "case tcp tcp_cpu udp loss udp_cpu rss".
table() {
    awk '
    { name[NR] = $1; tcp[$1] = $2; tcpu[$1] = $3; udp[$1] = $4; loss[$1] = $5; ucpu[$1] = $6; rss[$1] = $7 }
    function ratio(a, b) { return (b + 0 > 0) ? sprintf("%.2f", a / b) : "-" }
    function ss(n) { return (n ~ /gcm/) ? "ss-gcm" : (n ~ /aes-sha1/) ? "ss-aes-sha1" : "" }
    END {
        printf "%-16s %9s %6s %6s %5s | %9s %6s %6s %6s %5s | %7s\n", "case", "TCP Gb/s", "xveth", "xsswan", "cpu%", "UDP Gb/s", "loss%", "xveth", "xsswan", "cpu%", "RSS MB"
        for (i = 1; i <= NR; i++) {
            n = name[i]; s = ss(n)
            printf "%-16s %9s %6s %6s %5s | %9s %6s %6s %6s %5s | %7s\n", n,
                tcp[n], ratio(tcp[n], tcp["veth"]), (s != "" && s != n) ? ratio(tcp[n], tcp[s]) : "-", tcpu[n],
                udp[n], loss[n], ratio(udp[n], udp["veth"]), (s != "" && s != n) ? ratio(udp[n], udp[s]) : "-", ucpu[n], rss[n]
        }
    }'
}

for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CASES; do run_case "$r" "$c"; done
    echo "round $r (iperf3 ${TIME}s each; UDP ${UDP_LEN}-byte datagrams at full rate; cpu% = both tunnel daemons, % of one core)"
    awk -v r="$r" '$1 == r {$1 = ""; print substr($0, 2)}' "$RESULTS" | table
    echo
done
if ((ROUNDS > 1)); then
    echo "medians over $ROUNDS rounds"
    for c in $CASES; do
        line=$c
        for col in 3 4 5 6 7 8; do
            line+=" $(awk -v c="$c" -v k=$col '$2 == c {print $k}' "$RESULTS" | sort -g |
                awk -v k=$col '{v[NR] = $1} END {
                    if (v[1] == "-") { print "-"; exit }
                    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                    printf (k == 4 || k == 7 || k == 8) ? "%.0f\n" : (k == 6) ? "%.1f\n" : "%.2f\n", m }')"
        done
        echo "$line"
    done | table
fi
