//! Ethernet ports: configure, start, stop, and the burst calls workers use.
//!
//! One rx/tx queue pair per worker. RSS over IPv4/IPv6 TCP/UDP is enabled
//! where the device offers it, so each worker sees its own share of flows.

use std::ffi::CString;

use super::mbuf::Mbuf;
use super::mempool::Mempool;

/// RSS hash fields (RTE_ETH_RSS_*; macros bindgen cannot evaluate).
mod rss {
    pub const IPV4: u64 = 1 << 2;
    pub const NONFRAG_IPV4_TCP: u64 = 1 << 4;
    pub const NONFRAG_IPV4_UDP: u64 = 1 << 5;
    pub const IPV6: u64 = 1 << 8;
    pub const NONFRAG_IPV6_TCP: u64 = 1 << 10;
    pub const NONFRAG_IPV6_UDP: u64 = 1 << 11;
    pub const WANTED: u64 =
        IPV4 | NONFRAG_IPV4_TCP | NONFRAG_IPV4_UDP | IPV6 | NONFRAG_IPV6_TCP | NONFRAG_IPV6_UDP;
    /// What RSS pre-calculation needs: TCP and UDP hashed with their ports.
    pub const L4: u64 = NONFRAG_IPV4_TCP | NONFRAG_IPV4_UDP | NONFRAG_IPV6_TCP | NONFRAG_IPV6_UDP;
}

const RX_DESC: u16 = 1024;
const TX_DESC: u16 = 1024;

/// A configured and started port.
pub struct Port {
    pub id: u16,
    pub name: String,
    pub queues: u16,
    pub mac: [u8; 6],
    /// RSS hash fields in use (0: no RSS).
    pub rss_hf: u64,
    /// The NIC verifies received IPv4 header checksums (rx offload on): the
    /// core skips its own check for frames it marks good.
    pub rx_ip_csum: bool,
    started: bool,
    /// Close the device on stop (false for ports the caller created and reuses).
    pub close_on_stop: bool,
}

/// Counters as the device reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct PortCounters {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
}

/// The ethdev port id of a device by its ethdev name (vdev name or PCI address).
pub fn port_by_name(devname: &str) -> Option<u16> {
    let c = CString::new(devname).ok()?;
    let mut id: u16 = 0;
    // SAFETY: c is a valid C string; id is a valid out pointer.
    let rc = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
    (rc == 0).then_some(id)
}

impl Port {
    /// Configure `queues` rx/tx pairs on `id` and start it.
    pub fn start(
        id: u16,
        name: &str,
        queues: u16,
        mtu: u16,
        pool: &Mempool,
    ) -> Result<Port, String> {
        let queues = queues.max(1);
        let mut info: dpdk_sys::rte_eth_dev_info = Default::default();
        // SAFETY: info is a valid out struct; id validity is checked by DPDK.
        let rc = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(format!("cannot read device info: {}", super::strerror(rc)));
        }
        // SAFETY: driver_name is a static NUL-terminated string of the PMD (or null).
        let driver = unsafe { info.driver_name.as_ref() }
            .map(|p| {
                // SAFETY: non-null, NUL-terminated, static for the PMD's life.
                unsafe { std::ffi::CStr::from_ptr(p) }
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_default();
        if driver.contains("af_packet") && info.max_rx_queues > queues {
            // Its sockets all sit in one fanout group: frames the kernel hands to
            // a socket no worker polls would be lost.
            return Err(format!(
                "net_af_packet spreads frames over its {} queue pairs (qpairs) but {queues} worker(s) poll: set qpairs={queues}",
                info.max_rx_queues
            ));
        }
        if info.max_rx_queues < queues || info.max_tx_queues < queues {
            return Err(format!(
                "device offers {} rx / {} tx queues, {} needed (one per worker)",
                info.max_rx_queues, info.max_tx_queues, queues
            ));
        }
        let mut conf: dpdk_sys::rte_eth_conf = Default::default();
        let rss_hf = info.flow_type_rss_offloads & rss::WANTED;
        let use_rss = queues > 1 && rss_hf != 0;
        if use_rss {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_hf;
        }
        // RTE_ETH_RX_OFFLOAD_IPV4_CKSUM (a function-like macro in DPDK's header,
        // so not in the bindings): where the NIC has it, frames arrive marked
        // good or bad and the core checks only those it cannot vouch for.
        const RX_OFFLOAD_IPV4_CKSUM: u64 = 1 << 1;
        let rx_ip_csum = info.rx_offload_capa & RX_OFFLOAD_IPV4_CKSUM != 0;
        if rx_ip_csum {
            conf.rxmode.offloads |= RX_OFFLOAD_IPV4_CKSUM;
        }
        // SAFETY: conf is a fully initialised rte_eth_conf.
        let rc = unsafe { dpdk_sys::rte_eth_dev_configure(id, queues, queues, &conf) };
        if rc != 0 {
            return Err(format!(
                "configure {queues} queues: {}",
                super::strerror(rc)
            ));
        }
        let (mut nrx, mut ntx) = (RX_DESC, TX_DESC);
        // SAFETY: valid out pointers.
        unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut nrx, &mut ntx) };
        // SAFETY: plain query.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..queues {
            // SAFETY: null rxconf/txconf selects the driver defaults; the pool
            // outlives the port (the owner drops ports first).
            let rc = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    nrx,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(format!("rx queue {q}: {}", super::strerror(rc)));
            }
            // SAFETY: as above.
            let rc =
                unsafe { dpdk_sys::rte_eth_tx_queue_setup(id, q, ntx, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(format!("tx queue {q}: {}", super::strerror(rc)));
            }
        }
        if mtu != 0 {
            // SAFETY: plain setter; failure is tolerated (not every vdev supports it).
            unsafe { dpdk_sys::rte_eth_dev_set_mtu(id, mtu) };
        }
        // SAFETY: the port is configured.
        let rc = unsafe { dpdk_sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(format!("start: {}", super::strerror(rc)));
        }
        // SAFETY: started port; promiscuous mode is best effort (some vdevs lack it).
        unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        // IPv6 neighbour solicitations go to solicited-node multicast groups
        // (33:33:ff:..): where promiscuous mode is refused, all-multicast still
        // lets them in. Best effort too.
        // SAFETY: started port, plain setter.
        unsafe { dpdk_sys::rte_eth_allmulticast_enable(id) };
        let mut mac = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid out struct.
        unsafe { dpdk_sys::rte_eth_macaddr_get(id, &mut mac) };
        Ok(Port {
            id,
            name: name.to_string(),
            queues,
            mac: mac.addr_bytes,
            rss_hf: if use_rss { rss_hf } else { 0 },
            rx_ip_csum,
            started: true,
            close_on_stop: true,
        })
    }

    /// The port's RSS as software can reproduce it, for FULLNAT local port
    /// pre-calculation: the redirection table is set to spread over the
    /// port's queues round robin, then key and table are read back. `Err`
    /// says why the port cannot (no RSS, ports not hashed, unreadable).
    pub fn rss_steer(&self) -> Result<crate::rss::RssSteer, String> {
        if self.rss_hf == 0 {
            return Err("the device offers no RSS over several queues".into());
        }
        if self.rss_hf & rss::L4 != rss::L4 {
            return Err(format!(
                "RSS does not hash TCP and UDP ports of IPv4 and IPv6 (hash fields {:#x})",
                self.rss_hf
            ));
        }
        let size = super::rss::reta_size(self.id)?;
        // Some PMDs refuse to change the table: what it holds is checked below.
        let _ = super::rss::set_reta_round_robin(self.id, size, self.queues);
        let steer = super::rss::steer(self.id)?;
        if let Some(q) = steer.reta().entries().iter().find(|&&q| q >= self.queues) {
            return Err(format!(
                "the redirection table names queue {q}, beyond the {} configured",
                self.queues
            ));
        }
        Ok(steer)
    }

    pub fn link_up(&self) -> bool {
        let mut link: dpdk_sys::rte_eth_link = Default::default();
        // SAFETY: valid out struct, started port.
        unsafe { dpdk_sys::rte_eth_link_get_nowait(self.id, &mut link) };
        link.link_status() != 0
    }

    pub fn counters(&self) -> PortCounters {
        let mut s: dpdk_sys::rte_eth_stats = Default::default();
        // SAFETY: valid out struct.
        unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut s) };
        PortCounters {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
        }
    }

    /// Stop and close the device.
    pub fn stop(&mut self) {
        if self.started {
            self.started = false;
            // SAFETY: workers using the port's queues have been joined.
            unsafe {
                dpdk_sys::rte_eth_dev_stop(self.id);
                if self.close_on_stop {
                    dpdk_sys::rte_eth_dev_close(self.id);
                }
            }
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Receive up to `out.capacity() - out.len()` packets into `out`.
#[inline]
pub fn rx_burst<const N: usize>(
    port: u16,
    queue: u16,
    out: &mut arrayvec::ArrayVec<Mbuf, N>,
) -> usize {
    let room = out.capacity() - out.len();
    if room == 0 {
        return 0;
    }
    let mut raw: [*mut dpdk_sys::rte_mbuf; N] = [std::ptr::null_mut(); N];
    // SAFETY: raw has room for `room` <= N pointers; the queue belongs to the
    // calling worker alone (one queue pair per worker).
    let n =
        unsafe { dpdk_sys::rte_eth_rx_burst(port, queue, raw.as_mut_ptr(), room as u16) } as usize;
    for &p in &raw[..n] {
        // The header (data offset and length) is read first thing: fetch all
        // the burst's headers at once.
        super::prefetch(p as *const u8);
        // SAFETY: the driver handed us ownership of n valid mbufs.
        out.push(unsafe { Mbuf::from_raw(std::ptr::NonNull::new_unchecked(p)) });
    }
    n
}

/// Transmit `pkts`; the ones the NIC did not take are freed. Returns (sent, dropped).
#[inline]
pub fn tx_burst<const N: usize>(
    port: u16,
    queue: u16,
    pkts: &mut arrayvec::ArrayVec<Mbuf, N>,
) -> (usize, usize) {
    let total = pkts.len();
    if total == 0 {
        return (0, 0);
    }
    let mut raw: [*mut dpdk_sys::rte_mbuf; N] = [std::ptr::null_mut(); N];
    for (i, m) in pkts.drain(..).enumerate() {
        raw[i] = m.into_raw();
    }
    // SAFETY: raw[..total] are valid mbufs we own; the tx queue belongs to the
    // calling worker alone. The driver takes ownership of the first `sent`.
    let sent =
        unsafe { dpdk_sys::rte_eth_tx_burst(port, queue, raw.as_mut_ptr(), total as u16) } as usize;
    for &p in &raw[sent..total] {
        // SAFETY: the driver did not take these; they are still ours to free.
        drop(unsafe { Mbuf::from_raw(std::ptr::NonNull::new_unchecked(p)) });
    }
    (sent, total - sent)
}

/// Hot-plug a virtual device from its spec (`net_af_packet0,iface=lb0`).
pub fn vdev_init(spec: &str) -> Result<(), String> {
    let mut it = spec.splitn(2, ',');
    let name = it.next().unwrap_or("").trim();
    let args = it.next().unwrap_or("");
    let cname = CString::new(name).map_err(|_| "device name contains NUL".to_string())?;
    let cargs = CString::new(args).map_err(|_| "device args contain NUL".to_string())?;
    // SAFETY: both are valid C strings; DPDK copies them.
    let rc = unsafe { dpdk_sys::rte_vdev_init(cname.as_ptr(), cargs.as_ptr()) };
    if rc != 0 {
        return Err(format!(
            "cannot create device {spec:?}: {}",
            super::strerror(rc)
        ));
    }
    Ok(())
}
