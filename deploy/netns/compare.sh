#!/usr/bin/env bash
# dpvsd (NAT) side by side with the kernel's nftables DNAT, in the namespace
# topology of topology.sh, with the same client load:
#   - HTTP connections per second: wrk, one thread, `Connection: close`
#     (every request a new TCP connection through the director);
#   - HTTP requests per second on keep-alive connections: wrk, one thread;
#   - throughput of one TCP stream: iperf3.
# Load balancers, one after the other on the same topology:
#   dpvsd            dpvsd on af_packet vdevs, busy polling (adaptive_poll = false)
#   dpvsd_adapt      the same with adaptive_poll = true (the worker yields when
#                    idle, which matters here: clients, servers and director
#                    share 2 cores)
#   dpvsd_xdp        dpvsd on af_xdp vdevs (port-driver.sh), busy polling
#   dpvsd_xdp_adapt  the same with adaptive_poll = true
#   kernel           kernel-lb.sh: nftables DNAT in the lb namespace
# DPVS_PORT_DRIVER=af_packet or af_xdp measures dpvsd on that driver only;
# auto (default) measures both, af_xdp left null (with the reason on stderr)
# where it does not start. "driver" in the JSON: what auto would pick.
#
#   compare.sh [SECONDS]     default 5 s per measurement
#
# Prints progress on stderr and one JSON object on stdout. Needs root, wrk,
# iperf3, nginx (deploy/deps.sh) and a built dpvsd/dpvsctl (DPVSD, DPVSCTL, or
# target/release/). Holds /tmp/dpvs-e2e.lock (as the e2e tests do) while it
# runs. Everything it creates (namespaces, veths, processes, runtime dirs) is
# removed on exit, also on failure; processes are stopped by PID.
set -euo pipefail

SECS=${1:-5}
[[ $SECS =~ ^[0-9]+$ && $SECS -ge 1 && $SECS -le 120 ]] || { echo "compare: SECONDS must be 1..120" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DPVSD=${DPVSD:-$ROOT/target/release/dpvsd}
DPVSCTL=${DPVSCTL:-$ROOT/target/release/dpvsctl}
P=bcmp$$
P=${P:0:12}-
RUNDIR=/tmp/dpvs-$P
PREFIX=dpvs-cmp-$$
# shellcheck source=deploy/netns/port-driver.sh
. "$HERE/port-driver.sh"
DRIVER=$(port_driver_choice) || exit 2
VIP=10.0.0.100
IPERF_PORT=5201

log() { echo "compare: $*" >&2; }
for tool in wrk iperf3 nginx nft ip flock; do
  command -v "$tool" >/dev/null || { log "'$tool' missing (run: bash deploy/deps.sh)"; exit 1; }
done
for b in "$DPVSD" "$DPVSCTL"; do
  [[ -x $b ]] || { log "$b missing (cargo build --release -p dpvs-control)"; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { log "needs root (network namespaces, DPDK)"; exit 1; }

# One netns test or benchmark at a time on this machine (2 cores).
exec 9>/tmp/dpvs-e2e.lock
log "waiting for /tmp/dpvs-e2e.lock"
flock -w 1200 9 || { log "/tmp/dpvs-e2e.lock not acquired in 20 min"; exit 1; }

DPVSD_PID=
IPERF_PID=
stop_pid() { # pid: TERM, bounded wait, KILL
  local pid=$1
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$DPVSD_PID"; DPVSD_PID=
  stop_pid "$IPERF_PID"; IPERF_PID=
  bash "$HERE/kernel-lb.sh" down "$P" >/dev/null 2>&1 || true
  bash "$HERE/topology.sh" down "$P" "$RUNDIR" >/dev/null 2>&1 || true
  rm -rf "/var/run/dpdk/$PREFIX" "$RUNDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nsx() { local ns=$1; shift; ip netns exec "$P$ns" "$@"; }

log "topology $P up"
bash "$HERE/topology.sh" up "$P" "$RUNDIR" >/dev/null
# Many short connections from one client address: widen the port range, reuse TIME_WAIT.
nsx cli sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1
# iperf3 server on rs1 (the HTTP servers come with the topology).
setsid ip netns exec "${P}rs1" iperf3 -s -p "$IPERF_PORT" </dev/null >"$RUNDIR/iperf3.log" 2>&1 &
IPERF_PID=$!
for _ in $(seq 50); do
  [[ -n $(nsx rs1 ss -Hltn "sport = :$IPERF_PORT" 2>/dev/null) ]] && break
  sleep 0.1
done

flush_neigh() { for ns in cli rs1 rs2; do nsx "$ns" ip neigh flush all 2>/dev/null || true; done; }

check_http() { # the service answers at all (bounded)
  for _ in $(seq 20); do
    nsx cli curl -s -m 1 "http://$VIP/" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  log "no HTTP answer from $VIP"
  return 1
}

# wrk: requests per second and failed requests (socket errors + non-2xx), as
# "RPS ERRORS"; with `close`, every request is a new connection (= conn/s),
# else the 32 connections are kept alive.
measure_wrk() { # close|keepalive
  local out hdr=()
  [[ $1 == close ]] && hdr=(-H 'Connection: close')
  out=$(timeout $((SECS + 20)) ip netns exec "${P}cli" wrk -t1 -c32 -d"${SECS}s" --timeout 2s \
        "${hdr[@]}" "http://$VIP/" 2>&1) || true
  printf '    %s\n' "${out//$'\n'/$'\n'    }" >&2
  echo "$out" | awk '
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
    /Non-2xx/ { err += $NF }
    END { print rps, err + 0 }'
}

# iperf3: receiver bits per second of one stream, in Gbit/s.
measure_iperf() {
  local out
  out=$(timeout $((SECS + 20)) ip netns exec "${P}cli" iperf3 -c "$VIP" -p "$IPERF_PORT" -t "$SECS" -J 2>/dev/null) || true
  python3 -c 'import json,sys
try:
    d = json.load(sys.stdin); print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
except Exception:
    print("")' <<<"$out"
}

start_dpvsd() { # driver adaptive_poll
  local cfg=$RUNDIR/dpvs.toml
  cat >"$cfg" <<TOML
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "$PREFIX", "--log-level", "3"]
[workers]
cores = [1]
[dataplane]
adaptive_poll = $2
[[port]]
name = "dpdk0"
device = "$(port_device "$1" 0 lb0)"
queues = 1
addresses = ["10.0.0.1/24"]
[[port]]
name = "dpdk1"
device = "$(port_device "$1" 1 lb1)"
queues = 1
addresses = ["192.168.0.1/24"]
[control]
listen = "unix:$RUNDIR/dpvs.sock"

[[service]]
proto = "tcp"
vip = "$VIP"
vport = 80
scheduler = "rr"
[[service.dest]]
addr = "192.168.0.11"
mode = "nat"
[[service.dest]]
addr = "192.168.0.12"
mode = "nat"

[[service]]
proto = "tcp"
vip = "$VIP"
vport = $IPERF_PORT
scheduler = "rr"
[[service.dest]]
addr = "192.168.0.11"
mode = "nat"
TOML
  (port_driver_prepare "$1"; exec ip netns exec "${P}lb" "$DPVSD" --config "$cfg") </dev/null >"$RUNDIR/dpvsd.log" 2>&1 &
  DPVSD_PID=$!
  for _ in $(seq 150); do
    kill -0 "$DPVSD_PID" 2>/dev/null || { log "dpvsd exited: $(grep -v '^libbpf: elf:' "$RUNDIR/dpvsd.log" | tail -3)"; return 1; }
    timeout 5 "$DPVSCTL" --server "unix:$RUNDIR/dpvs.sock" -Ln >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "dpvsd did not answer in 30 s"
  return 1
}

declare -A CPS RPS GBPS ERRS KERRS
run_one() { # name
  local name=$1 r
  flush_neigh
  check_http || return 1
  log "$name: wrk ${SECS}s, Connection: close"
  r=$(measure_wrk close)
  CPS[$name]=${r%% *}
  ERRS[$name]=${r##* }
  log "$name: wrk ${SECS}s, keep-alive"
  r=$(measure_wrk keepalive)
  RPS[$name]=${r%% *}
  KERRS[$name]=${r##* }
  log "$name: iperf3 ${SECS}s"
  GBPS[$name]=$(measure_iperf)
  log "$name: ${CPS[$name]:-NA} conn/s (${ERRS[$name]:-0} failed), ${RPS[$name]:-NA} keep-alive req/s (${KERRS[$name]:-0} failed), ${GBPS[$name]:-NA} Gbit/s"
}

drivers=(af_packet af_xdp)
[[ $DRIVER == auto ]] || drivers=("$DRIVER")
XDP_WHY=
PICK=af_packet
for driver in "${drivers[@]}"; do
  if [[ $driver == af_xdp ]] && ! XDP_WHY=$(af_xdp_available); then
    log "af_xdp: not available: $XDP_WHY"
    continue
  fi
  for adaptive in false true; do
    name=dpvsd; [[ $driver == af_xdp ]] && name=dpvsd_xdp
    [[ $adaptive == true ]] && name=${name}_adapt
    log "$name: starting dpvsd on $driver (adaptive_poll = $adaptive)"
    if start_dpvsd "$driver" "$adaptive" && run_one "$name"; then
      [[ $driver == af_xdp ]] && PICK=af_xdp
    elif [[ $driver == af_xdp ]]; then
      XDP_WHY="dpvsd on af_xdp did not start or answer: $(grep -v '^libbpf: elf:' "$RUNDIR/dpvsd.log" | tail -3 | tr '\n"' ' _')"
    fi
    stop_pid "$DPVSD_PID"; DPVSD_PID=
    rm -rf "/var/run/dpdk/$PREFIX"
  done
done
[[ $DRIVER == auto ]] || PICK=$DRIVER

log "kernel: nftables DNAT (kernel-lb.sh)"
bash "$HERE/kernel-lb.sh" up "$P" >/dev/null
run_one kernel || true
bash "$HERE/kernel-lb.sh" down "$P" >/dev/null

num() { [[ -n ${1:-} ]] && echo "$1" || echo null; }
ratio() { python3 -c 'import sys
a, b = sys.argv[1], sys.argv[2]
try:
    print("%.3f" % (float(a) / float(b)))
except Exception:
    print("null")' "${1:-}" "${2:-}"; }
# Existing keys first (dpvsd = af_packet), then the af_xdp and keep-alive ones.
json() {
  local k v out=
  while [[ $# -ge 2 ]]; do
    k=$1 v=$2; shift 2
    out+="${out:+, }\"$k\": $v"
  done
  echo "{$out}"
}
args=(seconds "$SECS" loadavg "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
  dpvsd_cps "$(num "${CPS[dpvsd]:-}")" dpvsd_http_errors "$(num "${ERRS[dpvsd]:-}")"
  dpvsd_adapt_http_errors "$(num "${ERRS[dpvsd_adapt]:-}")" kernel_http_errors "$(num "${ERRS[kernel]:-}")"
  dpvsd_gbps "$(num "${GBPS[dpvsd]:-}")" dpvsd_adapt_cps "$(num "${CPS[dpvsd_adapt]:-}")"
  dpvsd_adapt_gbps "$(num "${GBPS[dpvsd_adapt]:-}")" kernel_cps "$(num "${CPS[kernel]:-}")"
  kernel_gbps "$(num "${GBPS[kernel]:-}")"
  cps_ratio "$(ratio "${CPS[dpvsd]:-}" "${CPS[kernel]:-}")" cps_ratio_adapt "$(ratio "${CPS[dpvsd_adapt]:-}" "${CPS[kernel]:-}")"
  gbps_ratio "$(ratio "${GBPS[dpvsd]:-}" "${GBPS[kernel]:-}")" gbps_ratio_adapt "$(ratio "${GBPS[dpvsd_adapt]:-}" "${GBPS[kernel]:-}")"
  driver "\"$PICK\"" af_xdp_error "$([[ -n $XDP_WHY ]] && echo "\"$XDP_WHY\"" || echo null)"
  dpvsd_xdp_device "\"$(port_device af_xdp 0 lb0)\"")
for n in dpvsd_xdp dpvsd_xdp_adapt; do
  args+=("${n}_cps" "$(num "${CPS[$n]:-}")" "${n}_http_errors" "$(num "${ERRS[$n]:-}")" "${n}_gbps" "$(num "${GBPS[$n]:-}")")
done
for n in dpvsd dpvsd_adapt dpvsd_xdp dpvsd_xdp_adapt kernel; do
  args+=("${n}_rps" "$(num "${RPS[$n]:-}")" "${n}_keepalive_errors" "$(num "${KERRS[$n]:-}")")
done
args+=(rps_ratio "$(ratio "${RPS[dpvsd]:-}" "${RPS[kernel]:-}")" rps_ratio_adapt "$(ratio "${RPS[dpvsd_adapt]:-}" "${RPS[kernel]:-}")")
for s in xdp xdp_adapt; do
  args+=("cps_ratio_$s" "$(ratio "${CPS[dpvsd_$s]:-}" "${CPS[kernel]:-}")"
    "rps_ratio_$s" "$(ratio "${RPS[dpvsd_$s]:-}" "${RPS[kernel]:-}")"
    "gbps_ratio_$s" "$(ratio "${GBPS[dpvsd_$s]:-}" "${GBPS[kernel]:-}")")
done
json "${args[@]}"
