#!/usr/bin/env bash
# The NAT-mode demo/test topology in network namespaces, and its real servers.
#
#   topology.sh up   PREFIX [RUNDIR]   create everything, start the real servers
#   topology.sh down PREFIX [RUNDIR]   remove everything (idempotent, never fails)
#   topology.sh show PREFIX            list what exists for PREFIX
#
#   ${P}cli  c0  10.0.0.2/24 (+ .3 .4), default via 10.0.0.1
#            fd00:10::2/64 (+ ::3 ::4), default via fd00:10::1
#     |
#   ${P}lb   lb0 (no kernel address)   <- dpvsd owns lb0/lb1 through af_packet vdevs
#            lb1 (no kernel address)
#     |
#   ${P}lan  br0 = { sw-lb, sw-rs1, sw-rs2 }       an L2 switch
#     |            |
#   ${P}rs1  eth0 192.168.0.11/24     ${P}rs2  eth0 192.168.0.12/24
#            fd00:192::11/64                   fd00:192::12/64
#            default via 192.168.0.1 / fd00:192::1 (the DIPs), nginx :80 and
#            UDP echo :9000 on both families, each answering with its own name
#            ("rs1\n", "rs1:<payload>").
#
# IPv6 (ULA prefixes, no duplicate address detection, no router advertisements)
# is on only in the client and real-server namespaces; the switch and the
# director's kernel stay silent (dpvsd answers neighbour discovery itself).
#
# Only addresses inside these namespaces are used; nothing touches the host's
# interfaces. Processes started here are recorded as pid files in RUNDIR and
# stopped by PID on `down`.
set -euo pipefail

usage() { echo "usage: $0 up|down|show PREFIX [RUNDIR]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
ACTION=$1
P=$2
[[ $P =~ ^[A-Za-z0-9_-]{1,16}$ ]] || { echo "bad PREFIX '$P' (1-16 of [A-Za-z0-9_-])" >&2; exit 2; }
RUNDIR=${3:-/tmp/dpvs-${P}}

NS_CLI=${P}cli NS_LB=${P}lb NS_LAN=${P}lan NS_RS1=${P}rs1 NS_RS2=${P}rs2
ALL_NS=("$NS_CLI" "$NS_LB" "$NS_LAN" "$NS_RS1" "$NS_RS2")
# What ha.sh and ecmp.sh add (a second director, a client-side switch, a
# router): removed by `down` too.
HA_NS=("${P}wan" "${P}lb2" "${P}rtr")
HTTP_PORT=80
UDP_PORT=9000

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qxF "$1"; }

# af_packet must see plain frames with full checksums: no TSO/GSO/GRO and no
# checksum offload on any veth end. Some features are fixed on veth; ignore those.
no_offload() { nsx "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true; }

quiet_ipv6() { nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true; }
# IPv6 on, but only the addresses we give: no DAD delay, no autoconfiguration.
plain_ipv6() {
  nsx "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
    net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
    net.ipv6.conf.all.autoconf=0 net.ipv6.conf.default.autoconf=0 >/dev/null
}

wait_listen() { # ns, ss filter args...; bounded: 5 s
  local ns=$1; shift
  for _ in $(seq 50); do
    [[ -n $(nsx "$ns" ss -Hln "$@" 2>/dev/null) ]] && return 0
    sleep 0.1
  done
  echo "topology: nothing listening in $ns ($*)" >&2
  return 1
}

start_bg() { # name ns cmd...: start in ns, detached from our stdio, pid file in RUNDIR
  local name=$1 ns=$2; shift 2
  # `ip netns exec` execs the command, so $! is the server's own PID.
  setsid ip netns exec "$ns" "$@" </dev/null >"$RUNDIR/$name.log" 2>&1 &
  echo $! >"$RUNDIR/$name.pid"
}

start_real_server() { # name ns
  local name=$1 ns=$2 dir=$RUNDIR/$1
  mkdir -p "$dir"
  if command -v nginx >/dev/null; then
    cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    server {
        listen 0.0.0.0:$HTTP_PORT;
        listen [::]:$HTTP_PORT ipv6only=on;
        default_type text/plain;
        location / { return 200 "$name\n"; }
    }
}
CONF
    start_bg "$name-http" "$ns" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log"
  else
    printf '%s\n' "$name" >"$dir/index.html"
    start_bg "$name-http" "$ns" python3 -m http.server "$HTTP_PORT" --bind :: --directory "$dir"
  fi
  cat >"$dir/udp_echo.py" <<PY
import socket, threading
def serve(family, addr):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, $UDP_PORT))
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(b"$name:" + data, peer)
threading.Thread(target=serve, args=(socket.AF_INET6, "::"), daemon=True).start()
serve(socket.AF_INET, "0.0.0.0")
PY
  start_bg "$name-udp" "$ns" python3 -u "$dir/udp_echo.py"
  wait_listen "$ns" -t "sport = :$HTTP_PORT"
  wait_listen "$ns" -u "sport = :$UDP_PORT"
  wait_listen "$ns" -6 -t "sport = :$HTTP_PORT"
  wait_listen "$ns" -6 -u "sport = :$UDP_PORT"
}

up() {
  local tool
  for tool in ip ethtool python3; do
    command -v "$tool" >/dev/null || { echo "topology: '$tool' missing (run: make deps)" >&2; exit 1; }
  done
  for ns in "${ALL_NS[@]}"; do
    if ns_exists "$ns"; then echo "topology: $ns exists; run '$0 down $P' first" >&2; exit 1; fi
  done
  # A half-built topology is worse than none.
  trap 'echo "topology: up failed, removing what was created" >&2; down' ERR
  mkdir -p "$RUNDIR"
  for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    case $ns in
      "$NS_CLI"|"$NS_RS1"|"$NS_RS2") plain_ipv6 "$ns" ;;
      *) quiet_ipv6 "$ns" ;;
    esac
    nsx "$ns" ip link set lo up
  done

  # client <-> director
  ip link add c0 netns "$NS_CLI" type veth peer name lb0 netns "$NS_LB"
  # director <-> switch, switch <-> real servers
  ip link add lb1 netns "$NS_LB" type veth peer name sw-lb netns "$NS_LAN"
  ip link add eth0 netns "$NS_RS1" type veth peer name sw-rs1 netns "$NS_LAN"
  ip link add eth0 netns "$NS_RS2" type veth peer name sw-rs2 netns "$NS_LAN"

  # No MLD snooping: the director never joins multicast groups, and its
  # solicited-node groups must reach it all the same.
  nsx "$NS_LAN" ip link add br0 type bridge mcast_snooping 0
  for ifc in sw-lb sw-rs1 sw-rs2; do
    nsx "$NS_LAN" ip link set "$ifc" master br0
    no_offload "$NS_LAN" "$ifc"
    nsx "$NS_LAN" ip link set "$ifc" up
  done
  no_offload "$NS_LAN" br0
  nsx "$NS_LAN" ip link set br0 up

  # The director's kernel stays silent on lb0/lb1: no addresses, no IPv6, and
  # its stack never takes in what arrives there. af_packet hands dpvsd a copy
  # of each frame and the kernel would process the original; once a kernel
  # interface of dpvsd (kni, TAP dpdk0/dpdk1) holds the VIP or a DIP, the
  # kernel would answer the clients' SYNs itself (with RSTs). A NIC bound to
  # vfio-pci never shows its frames to the kernel; this ingress drop gives the
  # veths the same property. AF_PACKET sockets see frames before the ingress
  # hook, so dpvsd still gets every one (af_xdp takes them before that anyway).
  for ifc in lb0 lb1; do
    nsx "$NS_LB" sysctl -qw "net.ipv6.conf.$ifc.disable_ipv6=1"
    no_offload "$NS_LB" "$ifc"
    nsx "$NS_LB" ip link set "$ifc" up
  done
  nsx "$NS_LB" nft -f - <<'NFT'
table netdev dpvs_owned {
  chain lb0 { type filter hook ingress device "lb0" priority 0; policy drop; }
  chain lb1 { type filter hook ingress device "lb1" priority 0; policy drop; }
}
NFT

  no_offload "$NS_CLI" c0
  nsx "$NS_CLI" ip link set c0 up
  nsx "$NS_CLI" ip addr add 10.0.0.2/24 dev c0
  nsx "$NS_CLI" ip addr add 10.0.0.3/24 dev c0
  nsx "$NS_CLI" ip addr add 10.0.0.4/24 dev c0
  nsx "$NS_CLI" ip route add default via 10.0.0.1
  for a in 2 3 4; do nsx "$NS_CLI" ip -6 addr add "fd00:10::$a/64" dev c0 nodad; done
  nsx "$NS_CLI" ip -6 route add default via fd00:10::1

  local i=11
  for ns in "$NS_RS1" "$NS_RS2"; do
    no_offload "$ns" eth0
    nsx "$ns" ip link set eth0 up
    nsx "$ns" ip addr add "192.168.0.$i/24" dev eth0
    nsx "$ns" ip route add default via 192.168.0.1
    nsx "$ns" ip -6 addr add "fd00:192::$i/64" dev eth0 nodad
    nsx "$ns" ip -6 route add default via fd00:192::1
    i=$((i + 1))
  done

  start_real_server rs1 "$NS_RS1"
  start_real_server rs2 "$NS_RS2"
  trap - ERR
  echo "topology $P up: namespaces ${ALL_NS[*]}; run dir $RUNDIR"
}

# Stop a process we recorded, by PID, only if it still lives in our namespace
# (a recycled PID elsewhere is left alone). TERM, bounded wait, then KILL.
stop_pid() { # pidfile ns
  local pf=$1 ns=$2 pid
  [[ -f $pf ]] || return 0
  pid=$(cat "$pf" 2>/dev/null || true)
  rm -f "$pf"
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  ns_exists "$ns" || return 0
  [[ $(ip netns identify "$pid" 2>/dev/null) == "$ns" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

down() {
  local name ns
  for name in rs1 rs2; do
    ns=${P}$name
    stop_pid "$RUNDIR/$name-http.pid" "$ns"
    stop_pid "$RUNDIR/$name-udp.pid" "$ns"
  done
  for ns in "${ALL_NS[@]}" "${HA_NS[@]}"; do
    ns_exists "$ns" || continue
    # Anything still running inside a namespace this script created was started
    # into it by us (servers, dpvsd, clients): stop it by PID before deleting.
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [[ -n $pids ]]; then
      # shellcheck disable=SC2086
      kill -TERM $pids 2>/dev/null || true
      sleep 0.3
      pids=$(ip netns pids "$ns" 2>/dev/null || true)
      # shellcheck disable=SC2086
      [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" 2>/dev/null || true
  done
  case $RUNDIR in
    /tmp/dpvs-*|/tmp/*/dpvs-*) rm -rf "$RUNDIR" ;;
    *) rm -f "$RUNDIR"/*.pid ;;  # a caller's dir: leave it to the caller
  esac
  return 0
}

show() {
  ip netns list | grep -F "$P" || true
  for ns in "${ALL_NS[@]}"; do
    ns_exists "$ns" || continue
    echo "== $ns"; nsx "$ns" ip -br addr
  done
}

case $ACTION in
  up) up ;;
  down) down ;;
  show) show ;;
  *) usage ;;
esac
