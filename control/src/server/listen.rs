//! Where the gRPC API listens and how it is served: the unix socket (mode 0600,
//! or 0660 for `[control] socket_group`), loopback TCP, or TCP with mutual TLS;
//! beside `dpvs.v1.Dpvs`, gRPC server reflection and the standard health
//! service on every listener; shutdown that reports NOT_SERVING first and does
//! not wait forever on streams. What the calls do is [`super::DpvsService`]'s.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::v1::dpvs_server::DpvsServer;
use tonic::transport::ServerTlsConfig;

use super::DpvsService;
use crate::config::Listen;
use crate::tls::TlsPem;

/// A bound listener, ready to serve.
pub enum Bound {
    Unix(tokio::net::UnixListener, SocketFile),
    Tcp(tokio::net::TcpListener),
    /// TCP with mutual TLS: every connection is a TLS handshake in which the
    /// client presents a certificate that chains to the configured CA.
    Tls(tokio::net::TcpListener, ServerTlsConfig),
}

impl Bound {
    /// The TCP address actually bound (port 0 resolved); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Bound::Unix(..) => None,
            Bound::Tcp(l) | Bound::Tls(l, _) => l.local_addr().ok(),
        }
    }
}

/// Removes the socket file when dropped (dpvsd exit, test end).
pub struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Binds `listen` without TLS. For a unix socket: creates the parent directory
/// and replaces a stale socket file (but refuses when a live server answers on
/// it, or when the path is not a socket). Plain TCP only on loopback: anywhere
/// else the API takes [`bind_tls`] (the config enforces it too).
pub async fn bind(listen: &Listen) -> Result<Bound, String> {
    match listen {
        Listen::Unix(path) => bind_unix(path).map(|(l, f)| Bound::Unix(l, f)),
        Listen::Tcp(addr) if !addr.ip().is_loopback() => Err(format!(
            "{addr} is not loopback: the API listens there with mutual TLS only"
        )),
        Listen::Tcp(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .map(Bound::Tcp)
            .map_err(|e| format!("cannot listen on {addr}: {e}")),
    }
}

/// Binds the TCP address `listen` for mutual TLS with `tls` (the files of
/// `[control] tls_cert`, `tls_key`, `tls_client_ca`). A unix socket never
/// uses TLS: its file mode protects it.
pub async fn bind_tls(listen: &Listen, tls: &TlsPem) -> Result<Bound, String> {
    let Listen::Tcp(addr) = listen else {
        return Err(format!(
            "{listen}: TLS is for TCP listeners (a unix socket is protected by its file mode)"
        ));
    };
    let config = tls.server_config();
    // What rustls would refuse at the first connection, refused now.
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|e| format!("control.tls_cert, control.tls_key: {}", error_chain(&e)))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map(|l| Bound::Tls(l, config))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out.replace('\n', " ")
}

fn bind_unix(path: &Path) -> Result<(tokio::net::UnixListener, SocketFile), String> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display();
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!("{shown} exists and is not a socket"));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!("{shown} is in use: is another dpvsd running?"));
        }
        std::fs::remove_file(path).map_err(|e| format!("cannot remove stale {shown}: {e}"))?;
    }
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| format!("cannot listen on unix:{shown}: {e}"))?;
    let file = SocketFile(path.to_path_buf());
    // The API can reconfigure the director: only its owner may connect.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot restrict unix:{shown} to mode 0600: {e}"))?;
    Ok((l, file))
}

/// `[control] socket_group`: the socket becomes mode 0660, group `group`, so
/// members of that group may drive dpvsd without being root.
pub fn share_socket(path: &Path, group: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let gid = group_id(
        group,
        &std::fs::read_to_string("/etc/group").unwrap_or_default(),
    )
    .ok_or_else(|| format!("control.socket_group: no group \"{group}\" in /etc/group"))?;
    std::os::unix::fs::chown(path, None, Some(gid))
        .map_err(|e| format!("cannot give {} to group {group}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("cannot set mode 0660 on {}: {e}", path.display()))
}

/// A group's id from `/etc/group` text (`name:x:gid:members`), or a number.
pub fn group_id(group: &str, etc_group: &str) -> Option<u32> {
    if let Ok(n) = group.parse() {
        return Some(n);
    }
    etc_group.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next() == Some(group)).then(|| f.nth(1)?.parse().ok())?
    })
}

/// How long in-flight calls (a health `Watch`, a reflection stream) may go on
/// after the shutdown signal before the server stops without them.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `svc` on `bound` until `shutdown` completes; then reports NOT_SERVING,
/// stops accepting, gives in-flight calls [`SHUTDOWN_GRACE`] to finish and
/// removes the socket file.
///
/// Beside `dpvs.v1.Dpvs`, every listener serves gRPC server reflection (v1 and
/// v1alpha, so `grpcurl list` works without the .proto file) and the standard
/// health service (`grpc.health.v1.Health`: `""` and `dpvs.v1.Dpvs` SERVING
/// while dpvsd serves; Kubernetes gRPC probes use it).
pub async fn serve(
    bound: Bound,
    svc: impl Into<Arc<DpvsService>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), String> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    health.set_serving::<DpvsServer<DpvsService>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| format!("gRPC reflection: {e}"))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| format!("gRPC reflection: {e}"))?;

    let mut builder = tonic::transport::Server::builder();
    if let Bound::Tls(_, config) = &bound {
        builder = builder
            .tls_config(config.clone())
            .map_err(|e| format!("TLS: {}", error_chain(&e)))?;
    }
    let router = builder
        .add_service(DpvsServer::from_arc(svc.into()))
        .add_service(health_svc)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    // The server stops on `stop`, which fires after NOT_SERVING went out.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    let (served, file) = match bound {
        Bound::Unix(l, file) => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
            let f = router.serve_with_incoming_shutdown(incoming, stop);
            (Box::pin(f) as Serving, Some(file))
        }
        Bound::Tcp(l) | Bound::Tls(l, _) => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
            let f = router.serve_with_incoming_shutdown(incoming, stop);
            (Box::pin(f) as Serving, None)
        }
    };
    let mut served = served;
    let r = tokio::select! {
        r = &mut served => r,
        () = shutdown => {
            for name in ["", <DpvsServer<DpvsService> as tonic::server::NamedService>::NAME] {
                health
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            let _ = stop_tx.send(true);
            // Streams (health Watch, reflection) may never end by themselves.
            tokio::time::timeout(SHUTDOWN_GRACE, served)
                .await
                .unwrap_or(Ok(()))
        }
    };
    drop(file);
    r.map_err(|e| format!("gRPC server failed: {e}"))
}

type Serving = std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

#[cfg(test)]
mod tests {
    use super::group_id;

    #[test]
    fn group_ids_from_etc_group() {
        let etc = "root:x:0:\ndpvs:x:998:alice,bob\nwheel:x:10:\n";
        assert_eq!(group_id("dpvs", etc), Some(998));
        assert_eq!(group_id("wheel", etc), Some(10));
        assert_eq!(group_id("1234", etc), Some(1234));
        assert_eq!(group_id("dp", etc), None);
        assert_eq!(group_id("nobody", "garbage\n::\n"), None);
    }
}
