#!/usr/bin/env bash
# Turns a topology.sh topology into a DR or TUN one: real-server replies bypass
# the director. Run after `topology.sh up PREFIX`; `topology.sh down PREFIX`
# removes everything this adds (it lives in the same namespaces).
#
#   bypass.sh dr  PREFIX VIP [RUNDIR]   VIP on lo of each RS, arp_ignore/arp_announce
#   bypass.sh tun PREFIX VIP [RUNDIR]   a user-space IPIP decapsulator per RS
#                                       (raw sockets for IPIP, proto 4 over IPv4,
#                                       and IPv6-in-IPv6, next header 41 over
#                                       IPv6 -> tun0 holding the VIP)
#
# VIP is an IPv4 or an IPv6 address (fd00:10::100: an IPv6 service). Linux
# never answers neighbour solicitations on eth0 for an IPv6 address held by lo
# or tun0, so IPv6 needs no arp_ignore counterpart.
#
# Both also start a UDP echo bound to VIP:9001 on each RS ("rsN:<payload>").
#
# The return path: a second leg of the client namespace in the server LAN
#
#   ${P}cli  c0 10.0.0.2/24 ── lb0 [director] lb1 ── br0 (${P}lan)
#            c1 192.168.0.254/24 ───────────────────┘  │
#               fd00:192::254/64           rs1, rs2: default via 192.168.0.254
#                                                    and fd00:192::254
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
if [[ $VIP =~ ^[0-9.]+$ ]]; then
  VIP_LEN=32
elif [[ $VIP =~ ^[0-9a-fA-F:]+$ && $VIP == *:* ]]; then
  VIP_LEN=128
else
  echo "bad VIP '$VIP' (an IPv4 or IPv6 address)" >&2; exit 2
fi
RUNDIR=${4:-/tmp/dpvs-${P}}
NS_CLI=${P}cli NS_LAN=${P}lan
RS_NS=("${P}rs1" "${P}rs2")
ROUTER_IP=192.168.0.254
ROUTER_IP6=fd00:192::254

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
no_offload() { nsx "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true; }

return_path() {
  ip link add c1 netns "$NS_CLI" type veth peer name sw-cli netns "$NS_LAN"
  no_offload "$NS_LAN" sw-cli
  nsx "$NS_LAN" ip link set sw-cli master br0
  nsx "$NS_LAN" ip link set sw-cli up
  no_offload "$NS_CLI" c1
  nsx "$NS_CLI" ip addr add "$ROUTER_IP/24" dev c1
  nsx "$NS_CLI" ip -6 addr add "$ROUTER_IP6/64" dev c1 nodad
  nsx "$NS_CLI" ip link set c1 up
  nsx "$NS_CLI" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
    net.ipv4.conf.c0.rp_filter=0 net.ipv4.conf.c1.rp_filter=0
  for ns in "${RS_NS[@]}"; do
    nsx "$ns" ip route replace default via "$ROUTER_IP"
    nsx "$ns" ip -6 route replace default via "$ROUTER_IP6"
  done
}

dr() {
  for ns in "${RS_NS[@]}"; do
    # The RS accepts packets to the VIP but never answers ARP for it, nor uses
    # it as the source of its own ARP requests.
    nsx "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
      net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2
    nsx "$ns" ip addr add "$VIP/$VIP_LEN" dev lo
  done
}

# IP-in-IP decapsulation in user space (this kernel has neither ipip nor
# ip6_tunnel): read the tunnelled packets from raw sockets, write the inner
# packet to a tun device whose kernel side holds the VIP. An IPv4 raw socket
# hands over the outer header too; an IPv6 one only what follows it.
DECAP_PY='
import fcntl, os, select, socket, struct, subprocess, sys
vip, vip_len = sys.argv[1], sys.argv[2]
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454ca, 0x0001, 0x1000
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
for cmd in (["ip", "addr", "add", vip + "/" + vip_len, "dev", "tun0"] + (["nodad"] if ":" in vip else []),
            ["ip", "link", "set", "tun0", "up"],
            ["sysctl", "-qw", "net.ipv4.conf.tun0.rp_filter=0"]):
    subprocess.run(cmd, check=True)
raw4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
raw6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41)
print("decap ready", flush=True)
while True:
    ready, _, _ = select.select([raw4, raw6], [], [])
    for s in ready:
        pkt = s.recv(65535)
        inner = pkt[(pkt[0] & 0x0f) * 4:] if s is raw4 else pkt
        if len(inner) >= 20 and inner[0] >> 4 == 4 or len(inner) >= 40 and inner[0] >> 4 == 6:
            os.write(tun, inner)
'

tun() {
  mkdir -p "$RUNDIR"
  local i=1
  for ns in "${RS_NS[@]}"; do
    nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
      net.ipv4.conf.eth0.rp_filter=0
    setsid ip netns exec "$ns" python3 -u -c "$DECAP_PY" "$VIP" "$VIP_LEN" </dev/null \
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
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
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
