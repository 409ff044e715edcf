#!/usr/bin/env bash
# A kernel director for the topology of topology.sh: nftables DNAT, round robin.
#
#   kernel-lb.sh up   PREFIX     give lb0/lb1 kernel addresses and install the DNAT
#   kernel-lb.sh down PREFIX     undo it (idempotent)
#
# It stands in for dpvsd where the kernel should do the work instead: to check the
# topology itself, and as the comparison peer for benchmarks (this kernel has no
# IPVS, so nftables DNAT is the kernel's L4 balancer here). Never run it while
# dpvsd owns lb0/lb1: both would answer ARP for the same addresses.
#
# Services (same as the demo): TCP 10.0.0.100:80 and UDP 10.0.0.100:9000 ->
# 192.168.0.11 / 192.168.0.12, alternating per new connection; and TCP
# 10.0.0.100:5201 -> 192.168.0.11 (iperf3 in compare.sh).
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 up|down PREFIX" >&2; exit 2; }
ACTION=$1
P=$2
NS=${P}lb
VIP=10.0.0.100
TABLE=dpvs_klb

nsx() { ip netns exec "$NS" "$@"; }

# The policy of topology.sh's ingress chains on lb0/lb1 (table netdev
# dpvs_owned), when they exist.
ingress_policy() {
  local ifc
  nsx nft list table netdev dpvs_owned >/dev/null 2>&1 || return 0
  for ifc in lb0 lb1; do
    nsx nft "chain netdev dpvs_owned $ifc { policy $1 ; }"
  done
}

up() {
  command -v nft >/dev/null || { echo "kernel-lb: 'nft' missing (apt-get install nftables)" >&2; exit 1; }
  ip netns list | awk '{print $1}' | grep -qxF "$NS" || { echo "kernel-lb: no namespace $NS (topology.sh up $P first)" >&2; exit 1; }
  # topology.sh drops everything arriving on lb0/lb1 at ingress (the
  # director's kernel must not see dpvsd's traffic); here the kernel is the
  # director: let it in, until `down`.
  ingress_policy accept
  nsx ip addr replace 10.0.0.1/24 dev lb0
  nsx ip addr replace "$VIP/32" dev lb0
  nsx ip addr replace 192.168.0.1/24 dev lb1
  nsx sysctl -qw net.ipv4.ip_forward=1
  nsx nft -f - <<NFT
table ip $TABLE {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport 80 dnat to numgen inc mod 2 map { 0 : 192.168.0.11, 1 : 192.168.0.12 }
        ip daddr $VIP udp dport 9000 dnat to numgen inc mod 2 map { 0 : 192.168.0.11, 1 : 192.168.0.12 }
        ip daddr $VIP tcp dport 5201 dnat to 192.168.0.11
    }
}
NFT
  echo "kernel-lb $P up: $VIP tcp/80 udp/9000 -> 192.168.0.11, 192.168.0.12; tcp/5201 -> 192.168.0.11 (nftables DNAT)"
}

down() {
  ip netns list | awk '{print $1}' | grep -qxF "$NS" || return 0
  nsx nft delete table ip "$TABLE" 2>/dev/null || true
  nsx sysctl -qw net.ipv4.ip_forward=0 || true
  nsx ip addr flush dev lb0 2>/dev/null || true
  nsx ip addr flush dev lb1 2>/dev/null || true
  ingress_policy drop
  # conntrack entries would keep mapping old flows; they die with the namespace
  # or time out, and new flows after `up` are scheduled afresh.
  return 0
}

case $ACTION in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down PREFIX" >&2; exit 2 ;;
esac
