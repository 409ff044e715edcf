#!/usr/bin/env bash
# Turns a topology.sh topology into a two-director one for failover (docs/ha.md):
# a second director and a switch on the client side. Run after
# `topology.sh up PREFIX`; `topology.sh down PREFIX` removes everything this
# adds (its namespaces are ${P}wan and ${P}lb2).
#
#   ha.sh PREFIX [RUNDIR]
#
#   ${P}cli  c0 10.0.0.2/24 (+ .3 .4)
#     |
#   ${P}wan  br0 = { sw-cli, sw-lb, sw-lb2 }   the client-side switch
#     |                  |
#   ${P}lb   lb0, lb1    ${P}lb2  lb0, lb1      two directors, af_packet ports,
#     |                  |                      the kernel kept off lb0/lb1
#   ${P}lan  br0 = { sw-lb, sw-lb2, sw-rs1, sw-rs2 }
#     |
#   ${P}rs1, ${P}rs2     default via 192.168.0.1: the address VRRP moves
#
# The directors' own addresses, VIPs and the inner gateway are dpvsd's and
# keepalived's to configure (the e2e_ha test, deploy/ha/).
set -euo pipefail

usage() { echo "usage: $0 PREFIX [RUNDIR]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
P=$1
[[ $P =~ ^[A-Za-z0-9_-]{1,16}$ ]] || { echo "bad PREFIX '$P'" >&2; exit 2; }

NS_CLI=${P}cli NS_LB=${P}lb NS_LB2=${P}lb2 NS_WAN=${P}wan NS_LAN=${P}lan

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
no_offload() { nsx "$1" ethtool -K "$2" tso off gso off gro off tx off rx off >/dev/null 2>&1 || true; }

for ns in "$NS_CLI" "$NS_LB" "$NS_LAN"; do
  ip netns list | awk '{print $1}' | grep -qxF "$ns" || { echo "ha: $ns missing: run topology.sh up $P first" >&2; exit 1; }
done

ip netns add "$NS_WAN"
ip netns add "$NS_LB2"
for ns in "$NS_WAN" "$NS_LB2"; do
  nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
  nsx "$ns" ip link set lo up
done

# The client's direct link to the first director becomes a switch port.
nsx "$NS_CLI" ip link del c0
ip link add c0 netns "$NS_CLI" type veth peer name sw-cli netns "$NS_WAN"
ip link add lb0 netns "$NS_LB" type veth peer name sw-lb netns "$NS_WAN"
ip link add lb0 netns "$NS_LB2" type veth peer name sw-lb2 netns "$NS_WAN"
ip link add lb1 netns "$NS_LB2" type veth peer name sw-lb2 netns "$NS_LAN"
nsx "$NS_WAN" ip link add br0 type bridge mcast_snooping 0
for ifc in sw-cli sw-lb sw-lb2; do
  nsx "$NS_WAN" ip link set "$ifc" master br0
  no_offload "$NS_WAN" "$ifc"
  nsx "$NS_WAN" ip link set "$ifc" up
done
nsx "$NS_WAN" ip link set br0 up
nsx "$NS_LAN" ip link set sw-lb2 master br0
no_offload "$NS_LAN" sw-lb2
nsx "$NS_LAN" ip link set sw-lb2 up

# Both directors' kernels stay off lb0/lb1 (topology.sh explains why).
for ns in "$NS_LB" "$NS_LB2"; do
  for ifc in lb0 lb1; do
    nsx "$ns" sysctl -qw "net.ipv6.conf.$ifc.disable_ipv6=1" 2>/dev/null || true
    no_offload "$ns" "$ifc"
    nsx "$ns" ip link set "$ifc" up
  done
  nsx "$ns" nft delete table netdev dpvs_owned 2>/dev/null || true
  nsx "$ns" nft -f - <<'NFT'
table netdev dpvs_owned {
  chain lb0 { type filter hook ingress device "lb0" priority 0; policy drop; }
  chain lb1 { type filter hook ingress device "lb1" priority 0; policy drop; }
}
NFT
done

no_offload "$NS_CLI" c0
nsx "$NS_CLI" ip link set c0 up
for a in 2 3 4; do nsx "$NS_CLI" ip addr add "10.0.0.$a/24" dev c0; done
nsx "$NS_CLI" ip route add default via 10.0.0.1
echo "ha: $P has two directors: $NS_LB and $NS_LB2"
