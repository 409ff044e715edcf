#!/usr/bin/env bash
# Turns a ha.sh topology into an active-active one behind a router
# (docs/ha.md "Active-active behind ECMP"). Run after `topology.sh up PREFIX`
# and `ha.sh PREFIX`; `topology.sh down PREFIX` removes everything.
#
#   ecmp.sh PREFIX VIP
#
#   ${P}cli  c0 172.16.0.2/24 (+ .3 .4), default via 172.16.0.1
#     |
#   ${P}rtr  r0 172.16.0.1/24, r1 10.0.0.254/24 (wan), r2 192.168.0.254/24 (lan)
#            forwarding, ECMP hashed on the 5-tuple; a BGP speaker (the test
#            starts FRR) installs VIP/32 via both directors
#     |                     \
#   ${P}wan  br0: sw-lb, sw-lb2, sw-rtr       ${P}lan br0: ..., sw-rtr
#
# The real servers take direct-routing traffic for VIP (on lo, arp_ignore /
# arp_announce) and answer the clients through the router (default via
# 192.168.0.254), never through a director.
set -euo pipefail

usage() { echo "usage: $0 PREFIX VIP" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
P=$1
VIP=$2
[[ $P =~ ^[A-Za-z0-9_-]{1,16}$ ]] || { echo "bad PREFIX '$P'" >&2; exit 2; }
[[ $VIP =~ ^[0-9.]+$ ]] || { echo "bad VIP '$VIP' (IPv4)" >&2; exit 2; }

NS_CLI=${P}cli NS_RTR=${P}rtr NS_WAN=${P}wan NS_LAN=${P}lan

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
no_offload() { nsx "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true; }

for ns in "$NS_CLI" "$NS_WAN" "$NS_LAN"; do
  ip netns list | awk '{print $1}' | grep -qxF "$ns" || { echo "ecmp: $ns missing: run topology.sh up and ha.sh first" >&2; exit 1; }
done

ip netns add "$NS_RTR"
nsx "$NS_RTR" ip link set lo up
nsx "$NS_RTR" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1 \
  net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 >/dev/null
nsx "$NS_RTR" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true

# The client moves behind the router.
nsx "$NS_CLI" ip link del c0
ip link add c0 netns "$NS_CLI" type veth peer name r0 netns "$NS_RTR"
ip link add r1 netns "$NS_RTR" type veth peer name sw-rtr netns "$NS_WAN"
ip link add r2 netns "$NS_RTR" type veth peer name sw-rtr netns "$NS_LAN"
for ns in "$NS_WAN" "$NS_LAN"; do
  nsx "$ns" ip link set sw-rtr master br0
  no_offload "$ns" sw-rtr
  nsx "$ns" ip link set sw-rtr up
done
for ifc in r0 r1 r2; do
  no_offload "$NS_RTR" "$ifc"
  nsx "$NS_RTR" ip link set "$ifc" up
done
nsx "$NS_RTR" ip addr add 172.16.0.1/24 dev r0
nsx "$NS_RTR" ip addr add 10.0.0.254/24 dev r1
nsx "$NS_RTR" ip addr add 192.168.0.254/24 dev r2

no_offload "$NS_CLI" c0
nsx "$NS_CLI" ip link set c0 up
for a in 2 3 4; do nsx "$NS_CLI" ip addr add "172.16.0.$a/24" dev c0; done
nsx "$NS_CLI" ip route add default via 172.16.0.1

for rs in rs1 rs2; do
  ns=${P}$rs
  nsx "$ns" ip addr add "$VIP/32" dev lo
  nsx "$ns" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
    net.ipv4.conf.eth0.arp_ignore=1 net.ipv4.conf.eth0.arp_announce=2 >/dev/null
  nsx "$ns" ip route replace default via 192.168.0.254
done
echo "ecmp: $P has a router ($NS_RTR) in front of two directors; real servers take $VIP by direct routing"
