/* Headers bindgen reads for dpdk-sys. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_bus_vdev.h>
#include <rte_dev.h>
#include <rte_flow.h>
#include <rte_pause.h>
#include <rte_eth_ring.h>
#include <rte_thash.h>

/* What bindgen cannot reach: rte_errno is a per-lcore (thread-local) variable. */
int dpvs_rte_errno(void);
