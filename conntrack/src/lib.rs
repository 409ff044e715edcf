//! Connection tracking for the director: the per-worker connection table, the IPVS
//! TCP/UDP state machines, the timer wheel that expires conns, and persistence
//! templates (`ipvsadm -p`).
//!
//! Pure and deterministic, like `quinn-proto`: no DPDK, no I/O, no clocks, no threads,
//! no locks. Time comes in as `now_ms` (virtual milliseconds) and packets as the
//! few facts the state machine needs (direction and TCP flags), so every transition
//! is a unit test. One [`ConnTable`] per worker lcore, preallocated: no allocation
//! per connection.
//!
//! Map for readers who know LVS: `table.rs` is `ip_vs_conn.c`, `tcp.rs` is the
//! state table of `ip_vs_proto_tcp.c`, `persist.rs` is the template half of
//! `ip_vs_conn.c`/`ip_vs_core.c` (`ip_vs_sched_persist`).

#![forbid(unsafe_code)]

mod index;
mod mem;
mod persist;
mod table;
mod tcp;
mod timeouts;
mod timer;
mod tuple;

pub use mem::{no_advice, Advise};
pub use persist::{PersistTable, Template};
pub use table::{
    Conn, ConnId, ConnTable, InsertError, KeyPlace, NewConn, TableFull, Transition, MAX_CAPACITY,
};
pub use tcp::{
    flag_row, next_state, ConnState, TcpDir, TcpFlags, TcpState, TCP_STATES, TCP_STATES_DOS,
};
pub use timeouts::Timeouts;
pub use timer::{TICK_MS, WHEEL_SLOTS};
pub use tuple::{mask_addr, Direction, Key as FlowKey, Tuple, PROTO_TCP, PROTO_UDP};
