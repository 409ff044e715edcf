-- Pktgen-DPDK Lua: rate sweep of established flows through a dpvs director.
--   pktgen ... -- -P -m "[1:2].0,[3:4].1" -f deploy/pktgen/dpvs.lua
-- Port 0 -> director client side; port 1 <- director server side (sink).
-- MODE: nat | fullnat | dr | tun (what the sink should see; for the loss check
-- only the counts matter, the per-packet checks are dpvs-bench gen's job).
package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;"
require "Pktgen"

local MODE = "nat"
local FLOWS_PORTS = 1000        -- 1000 source ports per client address
local CLIENTS = 1               -- 1 for 1 k flows, 20 for 1 M flows (x 50000 ports)
local DIRECTOR_MAC = "<director-port0-mac>"
local SECS = 10

pktgen.stop("all")
pktgen.reset("all")
pktgen.set("0", "size", 64)
pktgen.set_proto("0", "tcp")
pktgen.set_mac("0", "dst", DIRECTOR_MAC)
pktgen.range.dst_mac("0", "start", DIRECTOR_MAC)
pktgen.range.src_ip("0", "start", "100.64.0.0")
pktgen.range.src_ip("0", "min", "100.64.0.0")
pktgen.range.src_ip("0", "max", string.format("100.64.0.%d", CLIENTS - 1))
pktgen.range.src_ip("0", "inc", "0.0.0.1")
pktgen.range.dst_ip("0", "start", "10.0.0.100")
pktgen.range.dst_ip("0", "min", "10.0.0.100")
pktgen.range.dst_ip("0", "max", "10.0.0.100")
pktgen.range.dst_ip("0", "inc", "0.0.0.0")
pktgen.range.src_port("0", "start", 10000)
pktgen.range.src_port("0", "min", 10000)
pktgen.range.src_port("0", "max", 10000 + FLOWS_PORTS - 1)
pktgen.range.src_port("0", "inc", 1)
pktgen.range.dst_port("0", "start", 80)
pktgen.range.dst_port("0", "min", 80)
pktgen.range.dst_port("0", "max", 80)
pktgen.range.dst_port("0", "inc", 0)
pktgen.range.pkt_size("0", "start", 64)
pktgen.range.pkt_size("0", "min", 64)
pktgen.range.pkt_size("0", "max", 64)
pktgen.set_range("0", "on")
pktgen.process("1", "on")  -- answer ARP for the real servers

-- One SYN per flow so the director has the connections.
pktgen.range.tcp_flags("0", "syn")
pktgen.set("0", "count", FLOWS_PORTS * CLIENTS)
pktgen.start("0")
pktgen.delaya(2000)
pktgen.stop("0")
pktgen.range.tcp_flags("0", "ack")
pktgen.set("0", "count", 0)

for _, rate in ipairs({10, 25, 50, 75, 100}) do
  pktgen.clr()
  pktgen.set("0", "rate", rate)
  pktgen.start("0")
  pktgen.delaya(SECS * 1000)
  pktgen.stop("0")
  pktgen.delaya(500)
  local s = pktgen.portStats("all", "port")
  local sent, got = s[0].opackets, s[1].ipackets
  printf("%s rate %3d%%: sent %d, received %d, loss %.4f%%, %.2f Mpps delivered\n",
    MODE, rate, sent, got, 100.0 * (sent - got) / math.max(sent, 1), got / SECS / 1e6)
end
