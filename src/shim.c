/* The tiny C shim for what bindgen cannot reach (see src/dpdk.h). */
#include "dpdk.h"

int dpvs_rte_errno(void) { return rte_errno; }
