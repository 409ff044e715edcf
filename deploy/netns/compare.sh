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
# COMPARE_ROUNDS=N (default 1, at most 10) runs all load balancers N times,
# interleaved, and reports the median of each figure.
#
# Prints progress on stderr and one JSON object on stdout. Needs root, wrk,
# iperf3, nginx (deploy/deps.sh) and a built dpvsd/dpvsctl (DPVSD, DPVSCTL, or
# target/release/). Holds /tmp/dpvs-e2e.lock (as the e2e tests do) while it
# runs. Everything it creates (namespaces, veths, processes, runtime dirs) is
# removed on exit, also on failure; processes are stopped by PID.
set -euo pipefail

SECS=${1:-5}
[[ $SECS =~ ^[0-9]+$ && $SECS -ge 1 && $SECS -le 120 ]] || { echo "compare: SECONDS must be 1..120" >&2; exit 2; }
ROUNDS=${COMPARE_ROUNDS:-1}
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 && $ROUNDS -le 10 ]] || { echo "compare: COMPARE_ROUNDS must be 1..10" >&2; exit 2; }
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
  local up=
  for _ in $(seq 150); do
    kill -0 "$DPVSD_PID" 2>/dev/null || { log "dpvsd exited: $(grep -v '^libbpf: elf:' "$RUNDIR/dpvsd.log" | tail -3)"; return 1; }
    timeout 5 "$DPVSCTL" --server "unix:$RUNDIR/dpvs.sock" -Ln >/dev/null 2>&1 && { up=1; break; }
    sleep 0.2
  done
  if [[ -n $up ]]; then
    port_driver_tune "$1" "${P}lb" lb0 lb1
    [[ $1 != af_xdp ]] || log "af_xdp: lb0 $(nsx lb ip -d link show lb0 | grep -o 'prog/xdp.*name [a-z_]*'), threaded NAPI $(nsx lb cat /sys/class/net/lb0/threaded 2>/dev/null)"
    return 0
  fi
  log "dpvsd did not answer in 30 s"
  return 1
}

# Per load balancer: the figures of every round (space-separated), then their
# median; failed requests summed over the rounds.
declare -A CPS RPS GBPS ERRS KERRS
add() { # array-name key value
  local -n arr=$1
  arr[$2]="${arr[$2]:-}${arr[$2]:+ }$3"
}
run_one() { # name
  local name=$1 r c k g ce ke
  flush_neigh
  check_http || return 1
  log "$name: wrk ${SECS}s, Connection: close"
  r=$(measure_wrk close)
  c=${r%% *} ce=${r##* }
  add ERRS "$name" "$ce"
  log "$name: wrk ${SECS}s, keep-alive"
  r=$(measure_wrk keepalive)
  k=${r%% *} ke=${r##* }
  add KERRS "$name" "$ke"
  log "$name: iperf3 ${SECS}s"
  g=$(measure_iperf)
  [[ -z $c ]] || add CPS "$name" "$c"
  [[ -z $k ]] || add RPS "$name" "$k"
  [[ -z $g ]] || add GBPS "$name" "$g"
  log "$name: ${c:-NA} conn/s ($ce failed), ${k:-NA} keep-alive req/s ($ke failed), ${g:-NA} Gbit/s"
}
median() { # values...: their median (mean of the middle two for an even count), or nothing
  [[ $# -gt 0 ]] || return 0
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = int((NR + 1) / 2); if (NR % 2) print v[m]; else printf "%.3f\n", (v[m] + v[m + 1]) / 2 }'
}
total() { [[ $# -gt 0 ]] || return 0; printf '%s\n' "$@" | awk '{ t += $1 } END { print t + 0 }'; }

drivers=(af_packet af_xdp)
[[ $DRIVER == auto ]] || drivers=("$DRIVER")
XDP_WHY=
PICK=af_packet
if [[ " ${drivers[*]} " == *" af_xdp "* ]] && ! XDP_WHY=$(af_xdp_available); then
  log "af_xdp: not available: $XDP_WHY"
  drivers=("${drivers[@]/af_xdp}")
fi
# Rounds interleave the load balancers, so that other work on the machine
# (which comes and goes) weighs on all of them alike.
for round in $(seq "$ROUNDS"); do
  [[ $ROUNDS -eq 1 ]] || log "round $round of $ROUNDS"
  for driver in "${drivers[@]}"; do
    [[ -n $driver ]] || continue
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

  log "kernel: nftables DNAT (kernel-lb.sh)"
  bash "$HERE/kernel-lb.sh" up "$P" >/dev/null
  run_one kernel || true
  bash "$HERE/kernel-lb.sh" down "$P" >/dev/null
done
[[ $DRIVER == auto ]] || PICK=$DRIVER
for n in dpvsd dpvsd_adapt dpvsd_xdp dpvsd_xdp_adapt kernel; do
  [[ $ROUNDS -eq 1 || -z ${CPS[$n]:-} ]] || log "$n rounds: conn/s ${CPS[$n]}; keep-alive req/s ${RPS[$n]:-}; Gbit/s ${GBPS[$n]:-}"
  # shellcheck disable=SC2086  # word splitting of the lists is meant
  { CPS[$n]=$(median ${CPS[$n]:-}); RPS[$n]=$(median ${RPS[$n]:-}); GBPS[$n]=$(median ${GBPS[$n]:-})
    ERRS[$n]=$(total ${ERRS[$n]:-}); KERRS[$n]=$(total ${KERRS[$n]:-}); }
done

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
args=(seconds "$SECS" rounds "$ROUNDS" loadavg "\"$(cut -d' ' -f1-3 /proc/loadavg)\""
  dpvsd_cps "$(num "${CPS[dpvsd]:-}")" dpvsd_http_errors "$(num "${ERRS[dpvsd]:-}")"
  dpvsd_adapt_http_errors "$(num "${ERRS[dpvsd_adapt]:-}")" kernel_http_errors "$(num "${ERRS[kernel]:-}")"
  dpvsd_gbps "$(num "${GBPS[dpvsd]:-}")" dpvsd_adapt_cps "$(num "${CPS[dpvsd_adapt]:-}")"
  dpvsd_adapt_gbps "$(num "${GBPS[dpvsd_adapt]:-}")" kernel_cps "$(num "${CPS[kernel]:-}")"
  kernel_gbps "$(num "${GBPS[kernel]:-}")"
  cps_ratio "$(ratio "${CPS[dpvsd]:-}" "${CPS[kernel]:-}")" cps_ratio_adapt "$(ratio "${CPS[dpvsd_adapt]:-}" "${CPS[kernel]:-}")"
  gbps_ratio "$(ratio "${GBPS[dpvsd]:-}" "${GBPS[kernel]:-}")" gbps_ratio_adapt "$(ratio "${GBPS[dpvsd_adapt]:-}" "${GBPS[kernel]:-}")"
  driver "\"$PICK\"" af_xdp_threaded "$([[ ${DPVS_AF_XDP_THREADED:-0} == 1 ]] && echo true || echo false)" af_xdp_error "$([[ -n $XDP_WHY ]] && echo "\"$XDP_WHY\"" || echo null)"
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
