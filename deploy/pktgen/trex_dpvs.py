"""TRex stateless profile: established TCP flows toward a dpvs director.

    ./t-rex-64 -i -c 2          # server, ports 0 (client side) and 1 (sink)
    trex-console> start -f deploy/pktgen/trex_dpvs.py -m 5mpps -p 0 -t mode=nat,flows=1000

Port 0 sends to the VIP; port 1 receives what the director forwards to the
real servers (put it in service mode with ARP for 192.168.0.11-14 so the
director resolves them to it). Stream 0 opens every flow with a SYN once;
stream 1 then sends 64-byte ACKs round-robin over the flows.

mode: nat | fullnat | dr | tun only changes what the sink is expected to see
(see docs/benchmarks.md); the offered load is the same client traffic.
"""
from trex_stl_lib.api import (STLStream, STLPktBuilder, STLTXSingleBurst,
                              STLTXCont, STLVM, STLFlowStats)
from scapy.layers.l2 import Ether
from scapy.layers.inet import IP, TCP

VIP = "10.0.0.100"
VPORT = 80
CLIENT_BASE = "100.64.0.0"
PORTS_PER_CLIENT = 50000


class DpvsFlows:
    def _vm(self, flows):
        clients = max(1, (flows + PORTS_PER_CLIENT - 1) // PORTS_PER_CLIENT)
        ports = min(flows, PORTS_PER_CLIENT)
        vm = STLVM()
        # Port varies fastest; the client address steps when the port wraps.
        vm.var(name="sport", min_value=10000, max_value=10000 + ports - 1, size=2, op="inc")
        vm.var(name="cip", min_value=CLIENT_BASE,
               max_value="100.64.%d.%d" % ((clients - 1) >> 8, (clients - 1) & 0xff),
               size=4, op="inc", step=1)
        vm.write(fv_name="sport", pkt_offset="TCP.sport")
        vm.write(fv_name="cip", pkt_offset="IP.src")
        vm.fix_chksum()
        return vm

    def _pkt(self, flags, flows):
        base = Ether() / IP(src=CLIENT_BASE, dst=VIP, ttl=64) / TCP(sport=10000, dport=VPORT,
                                                                   flags=flags, seq=1000, ack=5001)
        pad = max(0, 60 - len(base)) * b"\x00"
        return STLPktBuilder(pkt=base / pad, vm=self._vm(flows))

    def get_streams(self, tunables=None, direction=0, **kwargs):
        t = dict(kwargs)
        if tunables:
            for kv in tunables:
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    t[k] = v
        flows = int(t.get("flows", 1000))
        mode = t.get("mode", "nat")
        assert mode in ("nat", "fullnat", "dr", "tun"), mode
        syn = STLStream(name="syn", packet=self._pkt("S", flows),
                        mode=STLTXSingleBurst(total_pkts=flows, pps=min(flows, 1_000_000)),
                        next="est", flow_stats=STLFlowStats(pg_id=1))
        est = STLStream(name="est", self_start=False, packet=self._pkt("A", flows),
                        mode=STLTXCont(pps=1_000_000), flow_stats=STLFlowStats(pg_id=2))
        return [syn, est]


def register():
    return DpvsFlows()
