#!/usr/bin/env bash
# `make demo`: a NAT-mode director in network namespaces, end to end.
#
# Builds dpvsd/dpvsctl (release), brings up deploy/netns/topology.sh (a client,
# the director, an L2 switch and two real servers running nginx and a UDP echo),
# starts dpvsd on DPDK vdevs over the director's veths (af_xdp when it works
# here, else af_packet; DPVS_PORT_DRIVER=auto|af_xdp|af_packet, see
# deploy/netns/port-driver.sh), configures
#   TCP 10.0.0.100:80   rr -> 192.168.0.11:80, 192.168.0.12:80 (masquerading)
#   UDP 10.0.0.100:9000 rr -> 192.168.0.11:9000, 192.168.0.12:9000
# with dpvsctl, sends a dozen HTTP requests and a few UDP datagrams from the client
# and prints who answered, then the ipvsadm-style tables and counters.
# Everything is torn down on exit, on failure and on Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
P=${DEMO_PREFIX:-dpvsdemo-}   # namespaces ${P}cli, ${P}lb, ...: another prefix runs a second demo alongside
RUNDIR=/tmp/dpvs-$P
TOPO=$ROOT/deploy/netns/topology.sh
DPDK_PREFIX=dpvsdemo$$
REQUESTS=${REQUESTS:-12}
DPVSD_PID=
# shellcheck source=deploy/netns/port-driver.sh
. "$ROOT/deploy/netns/port-driver.sh"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

stop_dpvsd() { # by PID, bounded wait, then KILL
  if [[ -n $DPVSD_PID ]] && kill -0 "$DPVSD_PID" 2>/dev/null; then
    kill -TERM "$DPVSD_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$DPVSD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DPVSD_PID" 2>/dev/null || true
    wait "$DPVSD_PID" 2>/dev/null || true
  fi
  DPVSD_PID=
  rm -rf "/var/run/dpdk/$DPDK_PREFIX"
}

cleanup() {
  local rc=$?
  # A second Ctrl-C must not cut the teardown short: ignore INT/TERM here and
  # in the commands below (an ignored signal stays ignored across exec).
  trap '' INT TERM
  trap - EXIT
  stop_dpvsd
  "$TOPO" down "$P" "$RUNDIR" >/dev/null 2>&1 || true
  if ((rc != 0)); then echo "demo: failed (exit $rc); everything it created is removed" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces and DPDK need it)"
DRIVER=$(port_driver_choice) || exit 2

# DPVS_BIN_DIR=target/debug DEMO_NO_BUILD=1 runs other binaries than the release build.
BIN_DIR=${DPVS_BIN_DIR:-$ROOT/target/release}
if [[ -z ${DEMO_NO_BUILD:-} ]]; then
  say "building dpvsd and dpvsctl (release)"
  cargo build --release -p dpvs-control
fi
DPVSD=$BIN_DIR/dpvsd
DPVSCTL=$BIN_DIR/dpvsctl
[[ -x $DPVSD ]] || die "$DPVSD was not built (does the control crate have the dpvsd binary yet?)"
[[ -x $DPVSCTL ]] || die "$DPVSCTL was not built"

say "topology: client, director, switch, two real servers"
"$TOPO" down "$P" "$RUNDIR" >/dev/null 2>&1 || true   # leftovers of a killed run
"$TOPO" up "$P" "$RUNDIR"

SOCK=$RUNDIR/dpvs.sock
ctl() { timeout --foreground 10 "$DPVSCTL" --server "unix:$SOCK" "$@"; }
start_dpvsd() { # driver: start dpvsd on it; fails (dpvsd stopped) when it does not come up
  local driver=$1 ready=
  cat >"$RUNDIR/dpvs.toml" <<TOML
[eal]
args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "$DPDK_PREFIX"]

[workers]
cores = [1]

[[port]]
name = "dpdk0"
device = "$(port_device "$driver" 0 lb0)"
queues = 1
addresses = ["10.0.0.1/24"]

[[port]]
name = "dpdk1"
device = "$(port_device "$driver" 1 lb1)"
queues = 1
addresses = ["192.168.0.1/24"]

[control]
listen = "unix:$SOCK"
TOML
  say "dpvsd in ${P}lb on $driver (config $RUNDIR/dpvs.toml, log $RUNDIR/dpvsd.log)"
  (port_driver_prepare "$driver"; exec ip netns exec "${P}lb" "$DPVSD" --config "$RUNDIR/dpvs.toml") \
    </dev/null >"$RUNDIR/dpvsd.log" 2>&1 &
  DPVSD_PID=$!
  for _ in $(seq 150); do   # 30 s
    kill -0 "$DPVSD_PID" 2>/dev/null || { tail -n 30 "$RUNDIR/dpvsd.log" >&2; echo "demo: dpvsd exited during start-up" >&2; stop_dpvsd; return 1; }
    if ctl -Ln >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.2
  done
  [[ -n $ready ]] || { tail -n 30 "$RUNDIR/dpvsd.log" >&2; echo "demo: dpvsd did not answer on $SOCK within 30 s" >&2; stop_dpvsd; return 1; }
  # Frames pass both ways on the client side: dpvsd answers pings to its address.
  for _ in $(seq 10); do
    pings_answered "${P}cli" 10.0.0.1 && { port_driver_tune "$driver" "${P}lb" lb0 lb1; echo "dpvsd pid $DPVSD_PID is up on $driver"; return 0; }
  done
  echo "demo: dpvsd on $driver does not answer pings from the client" >&2
  stop_dpvsd
  return 1
}

case $DRIVER in
  af_packet) start_dpvsd af_packet || die "dpvsd did not start on af_packet" ;;
  af_xdp)
    why=$(af_xdp_available) || die "af_xdp: $why"
    start_dpvsd af_xdp || die "dpvsd did not start on af_xdp (DPVS_PORT_DRIVER=af_packet to use af_packet)" ;;
  auto)
    if ! why=$(af_xdp_available); then
      echo "demo: af_xdp not available ($why): using af_packet"
      start_dpvsd af_packet || die "dpvsd did not start on af_packet"
    elif ! start_dpvsd af_xdp; then
      echo "demo: af_xdp did not work here: falling back to af_packet"
      start_dpvsd af_packet || die "dpvsd did not start on af_packet"
    fi ;;
esac

say "services (ipvsadm syntax)"
run() { echo "+ dpvsctl $*"; ctl "$@"; }
if ! out=$(ctl addr add 10.0.0.100/32 dev dpdk0 2>&1); then
  grep -qi exist <<<"$out" || die "addr add failed: $out"
fi
echo "+ dpvsctl addr add 10.0.0.100/32 dev dpdk0"
run -A -t 10.0.0.100:80 -s rr
run -a -t 10.0.0.100:80 -r 192.168.0.11:80 -m -w 1
run -a -t 10.0.0.100:80 -r 192.168.0.12:80 -m -w 1
run -A -u 10.0.0.100:9000 -s rr
run -a -u 10.0.0.100:9000 -r 192.168.0.11:9000 -m -w 1
run -a -u 10.0.0.100:9000 -r 192.168.0.12:9000 -m -w 1
ctl -Ln

say "$REQUESTS HTTP requests from the client (10.0.0.2) to http://10.0.0.100/"
declare -A count=()
for i in $(seq "$REQUESTS"); do
  body=$(ip netns exec "${P}cli" curl -s --noproxy "*" --max-time 2 http://10.0.0.100/ || true)
  body=${body:-"(no answer)"}
  printf '  request %2d -> %s\n' "$i" "$body"
  count[$body]=$(( ${count[$body]:-0} + 1 ))
done
for k in "${!count[@]}"; do printf '  %-12s %d\n' "$k" "${count[$k]}"; done
unanswered=${count["(no answer)"]:-0}

say "UDP datagrams to 10.0.0.100:9000"
for i in 1 2 3 4; do
  reply=$(ip netns exec "${P}cli" python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
s.sendto(sys.argv[1].encode(), ("10.0.0.100", 9000))
try: print(s.recv(2048).decode().strip())
except OSError: print("(no answer)")' "ping$i")
  printf '  datagram %d -> %s\n' "$i" "$reply"
done

say "dpvsctl -Ln --stats"
ctl -Ln --stats
say "dpvsctl -Lnc (connections)"
ctl -Lnc
say "dpvsctl stats (drops by reason)"
ctl stats || true
if ((unanswered > 0)); then
  echo "demo: $unanswered of $REQUESTS HTTP requests got no answer; the end of the dpvsd log:" >&2
  tail -n 20 "$RUNDIR/dpvsd.log" >&2 || true
  exit 1
fi
say "done; tearing down"
