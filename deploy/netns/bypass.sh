#!/usr/bin/env bash
# Turns a topology.sh topology into a DR or TUN one: real-server replies bypass
# the director. Run after `topology.sh up PREFIX`; `topology.sh down PREFIX`
# removes everything this adds (it lives in the same namespaces).
#
#   bypass.sh dr  PREFIX VIP [RUNDIR]   VIP on lo of each RS, arp_ignore/arp_announce
#   bypass.sh tun PREFIX VIP [RUNDIR]   a user-space IPIP decapsulator per RS
#                                       (raw socket proto 4 -> tun0 holding the VIP)
#
# Both also start a UDP echo bound to VIP:9001 on each RS ("rsN:<payload>").
#
# The return path: a second leg of the client namespace in the server LAN
#
#   ${P}cli  c0 10.0.0.2/24 ── lb0 [director] lb1 ── br0 (${P}lan)
#            c1 192.168.0.254/24 ───────────────────┘  │
#                                          rs1, rs2: default via 192.168.0.254
#
# so the client namespace doubles as the site router: requests enter through
# the director (the VIP resolves to it on c0), replies from VIP go straight from
# the RS to c1. rp_filter is off in the client namespace because replies from
# the VIP (an address of c0's subnet) arrive on c1.
set -euo pipefail

usage() { echo "usage: $0 dr|tun PREFIX VIP [RUNDIR]" >&2; exit 2; }
[[ $# -ge 3 ]] || usage
MODE=$1
P=$2
VIP=$3
[[ $P =~ ^[A-Za-z0-9_-]{1,16}$ ]] || { echo "bad PREFIX '$P'" >&2; exit 2; }
[[ $VIP =~ ^[0-9.]+$ ]] || { echo "bad VIP '$VIP' (IPv4)" >&2; exit 2; }
RUNDIR=${4:-/tmp/dpvs-${P}}
NS_CLI=${P}cli NS_LAN=${P}lan
RS_NS=("${P}rs1" "${P}rs2")
ROUTER_IP=192.168.0.254

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
no_offload() { nsx "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true; }

return_path() {
  ip link add c1 netns "$NS_CLI" type veth peer name sw-cli netns "$NS_LAN"
  no_offload "$NS_LAN" sw-cli
  nsx "$NS_LAN" ip link set sw-cli master br0
  nsx "$NS_LAN" ip link set sw-cli up
  no_offload "$NS_CLI" c1
  nsx "$NS_CLI" ip addr add "$ROUTER_IP/24" dev c1
  nsx "$NS_CLI" ip link set c1 up
  nsx "$NS_CLI" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.c0.rp_filter=0 net.ipv4.conf.c1.rp_filter=0
  for ns in "${RS_NS[@]}"; do
    nsx "$ns" ip route replace default via "$ROUTER_IP"
  done
}

dr() {
  for ns in "${RS_NS[@]}"; do
    # The RS accepts packets to the VIP but never answers ARP for it, nor uses
    # it as the source of its own ARP requests.
    nsx "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
      net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
    nsx "$ns" ip addr add "$VIP/32" dev lo
  done
}

# IPIP decapsulation in user space (this kernel has no ipip module): read the
# tunnelled packets from a raw socket, write the inner packet to a tun device
# whose kernel side holds the VIP.
DECAP_PY='
import fcntl, os, socket, struct, subprocess, sys
vip = sys.argv[1]
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454ca, 0x0001, 0x1000
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
for cmd in (["ip", "addr", "add", vip + "/32", "dev", "tun0"], ["ip", "link", "set", "tun0", "up"],
            ["sysctl", "-qw", "net.ipv4.conf.tun0.rp_filter=0"]):
    subprocess.run(cmd, check=True)
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
print("decap ready", flush=True)
while True:
    pkt = raw.recv(65535)
    ihl = (pkt[0] & 0x0f) * 4
    inner = pkt[ihl:]
    if len(inner) >= 20 and inner[0] >> 4 == 4:
        os.write(tun, inner)
'

tun() {
  mkdir -p "$RUNDIR"
  local i=1
  for ns in "${RS_NS[@]}"; do
    nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
      net.ipv4.conf.eth0.rp_filter=0
    setsid ip netns exec "$ns" python3 -u -c "$DECAP_PY" "$VIP" </dev/null \
      >"$RUNDIR/rs$i-decap.log" 2>&1 &
    echo $! >"$RUNDIR/rs$i-decap.pid"
    i=$((i + 1))
  done
  # Bounded wait for both helpers to own their tun0.
  for ns in "${RS_NS[@]}"; do
    local ok=
    for _ in $(seq 50); do
      if nsx "$ns" ip -br addr show dev tun0 2>/dev/null | grep -qF "$VIP"; then ok=1; break; fi
      sleep 0.1
    done
    [[ -n $ok ]] || { echo "bypass: tun0 with $VIP did not appear in $ns" >&2; cat "$RUNDIR"/rs*-decap.log >&2; exit 1; }
  done
}

# A UDP echo bound to the VIP on each RS (port 9001): a DR/TUN UDP server must
# answer from the VIP, which an unconnected socket on 0.0.0.0 does not do.
vip_udp_echo() {
  mkdir -p "$RUNDIR"
  local i=1
  for ns in "${RS_NS[@]}"; do
    setsid ip netns exec "$ns" python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9001))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(sys.argv[2].encode() + b":" + data, peer)
' "$VIP" "rs$i" </dev/null >"$RUNDIR/rs$i-vip-udp.log" 2>&1 &
    echo $! >"$RUNDIR/rs$i-vip-udp.pid"
    i=$((i + 1))
  done
  for ns in "${RS_NS[@]}"; do
    local ok=
    for _ in $(seq 50); do
      [[ -n $(nsx "$ns" ss -Hlnu "sport = :9001" 2>/dev/null) ]] && { ok=1; break; }
      sleep 0.1
    done
    [[ -n $ok ]] || { echo "bypass: no UDP echo on $VIP:9001 in $ns" >&2; exit 1; }
  done
}

case $MODE in
  dr) return_path; dr; vip_udp_echo ;;
  tun) return_path; tun; vip_udp_echo ;;
  *) usage ;;
esac
echo "bypass $MODE for $P: replies from $VIP return via $ROUTER_IP (client namespace)"
