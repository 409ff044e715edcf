//! rte_flow rules that send a slice of a local address's ports to a queue
//! ([`crate::flowrules::FlowRule`]): ETH / IPV4|IPV6 (destination) /
//! TCP|UDP (destination port under a mask) -> QUEUE. Validated, created and
//! destroyed on the control thread, never per packet.

use std::net::IpAddr;
use std::ptr::NonNull;

use crate::flowrules::FlowRule;
use crate::wire::ip_proto;

/// An installed rule (destroyed explicitly, or with its port).
pub struct Flow {
    port: u16,
    raw: NonNull<dpdk_sys::rte_flow>,
}

// SAFETY: an rte_flow handle is an opaque pointer the PMD owns; it is only
// used by the control thread that holds it, for destroy.
unsafe impl Send for Flow {}

/// The pattern and action structures of one rule; they must stay in place
/// while DPDK reads them.
struct Parts {
    attr: dpdk_sys::rte_flow_attr,
    ip4: [dpdk_sys::rte_flow_item_ipv4; 2],
    ip6: [dpdk_sys::rte_flow_item_ipv6; 2],
    tcp: [dpdk_sys::rte_flow_item_tcp; 2],
    udp: [dpdk_sys::rte_flow_item_udp; 2],
    queue: dpdk_sys::rte_flow_action_queue,
}

impl Parts {
    fn new(r: &FlowRule) -> Box<Parts> {
        let mut p = Box::new(Parts {
            attr: Default::default(),
            ip4: Default::default(),
            ip6: Default::default(),
            tcp: Default::default(),
            udp: Default::default(),
            queue: dpdk_sys::rte_flow_action_queue { index: r.queue },
        });
        p.attr.set_ingress(1);
        match r.addr {
            IpAddr::V4(a) => {
                p.ip4[0].hdr.dst_addr = u32::from(a).to_be();
                p.ip4[1].hdr.dst_addr = u32::MAX;
            }
            IpAddr::V6(a) => {
                p.ip6[0].hdr.dst_addr = a.octets();
                p.ip6[1].hdr.dst_addr = [0xff; 16];
            }
        }
        let (value, mask) = (r.port_value.to_be(), r.port_mask.to_be());
        p.tcp[0].hdr.dst_port = value;
        p.tcp[1].hdr.dst_port = mask;
        p.udp[0].hdr.dst_port = value;
        p.udp[1].hdr.dst_port = mask;
        p
    }

    /// The pattern (spec, mask) items and the actions, pointing into `self`.
    fn items(
        &self,
        r: &FlowRule,
    ) -> ([dpdk_sys::rte_flow_item; 4], [dpdk_sys::rte_flow_action; 2]) {
        let item =
            |type_, spec: *const libc::c_void, mask: *const libc::c_void| dpdk_sys::rte_flow_item {
                type_,
                spec,
                last: std::ptr::null(),
                mask,
            };
        let none = std::ptr::null();
        let l3 = match r.addr {
            IpAddr::V4(_) => item(
                dpdk_sys::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_IPV4,
                (&self.ip4[0] as *const dpdk_sys::rte_flow_item_ipv4).cast(),
                (&self.ip4[1] as *const dpdk_sys::rte_flow_item_ipv4).cast(),
            ),
            IpAddr::V6(_) => item(
                dpdk_sys::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_IPV6,
                (&self.ip6[0] as *const dpdk_sys::rte_flow_item_ipv6).cast(),
                (&self.ip6[1] as *const dpdk_sys::rte_flow_item_ipv6).cast(),
            ),
        };
        let l4 = if r.proto == ip_proto::TCP {
            item(
                dpdk_sys::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_TCP,
                (&self.tcp[0] as *const dpdk_sys::rte_flow_item_tcp).cast(),
                (&self.tcp[1] as *const dpdk_sys::rte_flow_item_tcp).cast(),
            )
        } else {
            item(
                dpdk_sys::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_UDP,
                (&self.udp[0] as *const dpdk_sys::rte_flow_item_udp).cast(),
                (&self.udp[1] as *const dpdk_sys::rte_flow_item_udp).cast(),
            )
        };
        let items = [
            item(
                dpdk_sys::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_ETH,
                none,
                none,
            ),
            l3,
            l4,
            item(
                dpdk_sys::rte_flow_item_type_RTE_FLOW_ITEM_TYPE_END,
                none,
                none,
            ),
        ];
        let actions = [
            dpdk_sys::rte_flow_action {
                type_: dpdk_sys::rte_flow_action_type_RTE_FLOW_ACTION_TYPE_QUEUE,
                conf: (&self.queue as *const dpdk_sys::rte_flow_action_queue).cast(),
            },
            dpdk_sys::rte_flow_action {
                type_: dpdk_sys::rte_flow_action_type_RTE_FLOW_ACTION_TYPE_END,
                conf: std::ptr::null(),
            },
        ];
        (items, actions)
    }
}

/// The PMD's message for a failed flow call.
fn message(rc: i32, e: &dpdk_sys::rte_flow_error) -> String {
    let why = if e.message.is_null() {
        super::strerror(rc)
    } else {
        // SAFETY: the PMD sets `message` to a NUL-terminated static string.
        unsafe { std::ffi::CStr::from_ptr(e.message) }
            .to_string_lossy()
            .into_owned()
    };
    format!("rte_flow: {why}")
}

/// Whether port `port` would accept `rule`.
pub fn validate(port: u16, rule: &FlowRule) -> Result<(), String> {
    let parts = Parts::new(rule);
    let (items, actions) = parts.items(rule);
    let mut err = dpdk_sys::rte_flow_error::default();
    // SAFETY: attr, items and actions are valid, END-terminated, and point
    // into `parts`, alive for the call; err is a valid out struct.
    let rc = unsafe {
        dpdk_sys::rte_flow_validate(
            port,
            &parts.attr,
            items.as_ptr(),
            actions.as_ptr(),
            &mut err,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(message(rc, &err))
    }
}

/// Install `rule` on port `port`.
pub fn create(port: u16, rule: &FlowRule) -> Result<Flow, String> {
    let parts = Parts::new(rule);
    let (items, actions) = parts.items(rule);
    let mut err = dpdk_sys::rte_flow_error::default();
    // SAFETY: as in `validate`; the PMD copies what it keeps.
    let raw = unsafe {
        dpdk_sys::rte_flow_create(
            port,
            &parts.attr,
            items.as_ptr(),
            actions.as_ptr(),
            &mut err,
        )
    };
    NonNull::new(raw)
        .map(|raw| Flow { port, raw })
        .ok_or_else(|| message(-super::last_errno(), &err))
}

impl Flow {
    /// Remove the rule.
    pub fn destroy(self) -> Result<(), String> {
        let mut err = dpdk_sys::rte_flow_error::default();
        // SAFETY: `raw` came from rte_flow_create on `port` and is destroyed
        // once (self is consumed).
        let rc = unsafe { dpdk_sys::rte_flow_destroy(self.port, self.raw.as_ptr(), &mut err) };
        if rc == 0 {
            Ok(())
        } else {
            Err(message(rc, &err))
        }
    }
}
