//! Generates the DPDK bindings for `dpdk-sys`.
//!
//! bindgen reads the DPDK headers; `wrap_static_fns` emits C wrappers for the
//! `static inline` fast-path functions (rte_eth_rx_burst, rte_pktmbuf_alloc, ...),
//! which are compiled with pkg-config's own cflags (they carry
//! `-include rte_config.h` and the `-march` DPDK was built for).

use std::env;
use std::path::PathBuf;

const MIN_DPDK: &str = "22.11";

fn main() {
    println!("cargo:rerun-if-changed=src/dpdk.h");
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=build.rs");

    let lib = match pkg_config::Config::new()
        .atleast_version(MIN_DPDK)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!(
                "\nerror: libdpdk >= {MIN_DPDK} was not found by pkg-config ({e}).\n\
                 On Debian 12 install it with:  apt-get install libdpdk-dev pkg-config clang\n\
                 (or run `make deps`).\n"
            );
            std::process::exit(1);
        }
    };

    // pkg-config's cflags, as the compiler sees them; bindgen and cc both need them.
    let cflags_out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("pkg-config --cflags libdpdk");
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags_out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    // Driver libraries whose API we call directly (pkg-config lists only the
    // core libraries; the PMDs are otherwise loaded as plugins).
    for drv in ["rte_bus_vdev", "rte_net_ring"] {
        println!("cargo:rustc-link-lib=dylib={drv}");
    }

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let wrappers = out.join("dpdk_static_wrappers");

    let mut builder = bindgen::Builder::default()
        .header("src/dpdk.h")
        .clang_arg("-DALLOW_EXPERIMENTAL_API")
        .clang_args(cflags.iter().filter(|f| !f.starts_with("-march")))
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrappers)
        .generate_comments(false)
        .layout_tests(false)
        .derive_default(true)
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("RING_F_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("LCORE_ID_ANY")
        .allowlist_function("dpvs_.*")
        // Packed + aligned structs that Rust cannot represent: keep them opaque.
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_combined_msg_hdr")
        .opaque_type("rte_gtp_psc_.*")
        .blocklist_function("rte_.*_vfprintf")
        .blocklist_function("rte_vlog")
        .blocklist_function("rte_log_dump")
        .blocklist_function("rte_openlog_stream")
        .blocklist_function(".*va_list.*");
    for p in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", p.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed to generate DPDK bindings");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings.rs");

    // Compile the wrappers generated for static inline functions.
    let mut cc = cc::Build::new();
    cc.file(wrappers.with_extension("c"))
        .file("src/shim.c")
        .include(env::current_dir().unwrap())
        .define("ALLOW_EXPERIMENTAL_API", None)
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("dpdk_static_wrappers");
}
