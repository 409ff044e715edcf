# shellcheck shell=bash
# Sourced by deploy/demo.sh and deploy/netns/compare.sh: which DPDK vdev dpvsd
# drives the director's veths (lb0, lb1) with.
#
#   DPVS_PORT_DRIVER=auto       (default) net_af_xdp when it can work here and
#                               dpvsd starts and answers on it, else net_af_packet
#   DPVS_PORT_DRIVER=af_xdp     net_af_xdp only: an AF_XDP socket on the veth,
#                               frames land in dpvsd's mbuf pool (the pool is the
#                               UMEM); the kernel still copies (veth has native XDP
#                               but no zero-copy XSK: copy mode), but user space
#                               does not
#   DPVS_PORT_DRIVER=af_packet  net_af_packet only: a PACKET_MMAP ring per queue,
#                               every frame copied into the ring and again into an
#                               mbuf (the former default)
#
# net_af_xdp loads libxdp's xsk_def_prog on the veth in native (driver) mode.
# Without a bpffs at /sys/fs/bpf libxdp says "Can't use dispatcher without a
# working bpffs ... Falling back to loading single prog without dispatcher":
# harmless here (one program per veth). The UMEM is locked memory: root has
# CAP_IPC_LOCK; port_driver_prepare raises RLIMIT_MEMLOCK all the same.

port_driver_choice() { # prints auto, af_xdp or af_packet; fails on anything else
  case ${DPVS_PORT_DRIVER:-auto} in
    auto|af_xdp|af_packet) echo "${DPVS_PORT_DRIVER:-auto}" ;;
    *) echo "DPVS_PORT_DRIVER must be auto, af_xdp or af_packet (not '$DPVS_PORT_DRIVER')" >&2; return 2 ;;
  esac
}

# Can net_af_xdp work on this machine at all? Prints the reason when not.
af_xdp_available() {
  if ! python3 -c 'import socket; socket.socket(44, socket.SOCK_RAW).close()' 2>/dev/null; then
    echo "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)"
    return 1
  fi
  # (no `ldconfig -p | grep -q`: under pipefail grep's early exit fails the pipe)
  if [[ $(ldconfig -p 2>/dev/null) != *librte_net_af_xdp.so* ]]; then
    echo "DPDK's net_af_xdp driver (librte_net_af_xdp.so) is not installed"
    return 1
  fi
  return 0
}

# Before starting dpvsd on af_xdp: the UMEM (dpvsd's mbuf pool) is locked memory.
port_driver_prepare() { # driver
  [[ $1 == af_xdp ]] || return 0
  ulimit -l unlimited 2>/dev/null || true
}

# DPVS_AF_XDP_THREADED=1, once dpvsd runs on af_xdp (its XDP program gives the
# veth a NAPI context): threaded NAPI on the director's veths, so that the XDP
# receive work (the frame copied into the UMEM) runs in a kernel thread the
# scheduler can place on either core instead of inline in the sending
# namespace's softirq. Off by default: measured here it helps one iperf3
# stream (+0.1 x the kernel) but costs a thread wake-up per burst, and HTTP
# conn/s and keep-alive req/s fell well below the kernel (docs/benchmarks.md).
port_driver_tune() { # driver ns iface...
  local driver=$1 ns=$2 ifc
  shift 2
  [[ $driver == af_xdp && ${DPVS_AF_XDP_THREADED:-0} == 1 ]] || return 0
  for ifc in "$@"; do
    ip netns exec "$ns" sh -c "echo 1 >/sys/class/net/$ifc/threaded" 2>/dev/null || true
  done
}

# The [[port]] device string for one veth. queues: the number of rx/tx queue
# pairs (= dpvsd workers); af_xdp binds veth queues 0..queues-1 (DPDK 22.11
# takes only 1 on a veth: it counts ethtool's combined channels, which veth
# lacks), af_packet spreads over that many sockets in one fanout group. DPVS_AF_XDP_ARGS adds
# net_af_xdp devargs (busy_budget=N, force_copy=1, ...) for experiments.
port_device() { # driver index iface [queues]
  local q=${4:-1}
  case $1 in
    af_xdp) echo "net_af_xdp$2,iface=$3,start_queue=0,queue_count=$q${DPVS_AF_XDP_ARGS:+,$DPVS_AF_XDP_ARGS}" ;;
    af_packet) echo "net_af_packet$2,iface=$3,qpairs=$q" ;;
    *) echo "port_device: unknown driver '$1'" >&2; return 2 ;;
  esac
}

# Do frames pass both ways between a namespace and dpvsd? One ICMP echo to one
# of dpvsd's addresses (it answers pings to them), 1 s; no ping(8) needed.
pings_answered() { # ns ipv4-address
  ip netns exec "$1" python3 - "$2" <<'PY' 2>/dev/null
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF
ident = os.getpid() & 0xFFFF
hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"dpvs-probe"
pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
s.sendto(pkt, (sys.argv[1], 0))
end = time.time() + 1.0
while time.time() < end:
    try:
        data, peer = s.recvfrom(2048)
    except socket.timeout:
        break
    icmp = data[(data[0] & 15) * 4:]
    if peer[0] == sys.argv[1] and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        sys.exit(0)
sys.exit(1)
PY
}
