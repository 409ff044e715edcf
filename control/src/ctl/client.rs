//! Connecting `dpvsctl` to dpvsd (unix socket, loopback TCP, or TCP with
//! mutual TLS) and turning gRPC failures into one-line messages.

use std::error::Error as _;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use proto::v1::dpvs_client::DpvsClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::CtlError;
use crate::tls::{TlsFiles, CTL_NAMES};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how dpvsctl reaches dpvsd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `unix:PATH`, `HOST:PORT` (`http://` accepted) or `https://HOST:PORT`.
    pub address: String,
    /// For `https://`: the client certificate, its key and the CA that
    /// dpvsd's certificate must chain to.
    pub tls: Option<TlsFiles>,
}

impl From<&str> for Target {
    /// A server without TLS files.
    fn from(address: &str) -> Target {
        Target {
            address: address.to_string(),
            tls: None,
        }
    }
}

/// Connects to `target`: `unix:PATH`, `host:port` (an `http://` prefix is
/// accepted) or `https://host:port` with its TLS files.
pub async fn connect(target: &Target) -> Result<DpvsClient<Channel>, CtlError> {
    let server = target.address.as_str();
    let unreachable = |e: &dyn std::error::Error| {
        CtlError::failed(format!("cannot reach dpvsd at {server}: {}", innermost(e)))
    };
    let invalid = |_| CtlError::usage(format!("invalid server address \"{server}\""));
    let channel = if let Some(path) = server.strip_prefix("unix:") {
        let path = path.to_string();
        // The URI is required by the API but unused: the connector dials the socket.
        Endpoint::from_static("http://dpvsd.local")
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(s))
                }
            }))
            .await
            .map_err(|e| unreachable(&e))?
    } else if server.starts_with("https://") {
        let Some(files) = &target.tls else {
            return Err(CtlError::usage(format!(
                "--server {server}: needs --tls-cert, --tls-key and --tls-ca"
            )));
        };
        let pem = files.load(&CTL_NAMES).map_err(CtlError::failed)?;
        Endpoint::from_shared(server.to_string())
            .map_err(invalid)?
            .tls_config(pem.client_config())
            .map_err(|e| CtlError::failed(format!("TLS for {server}: {}", innermost(&e))))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| unreachable(&e))?
    } else {
        let uri = if server.starts_with("http://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        Endpoint::from_shared(uri)
            .map_err(invalid)?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await
            .map_err(|e| unreachable(&e))?
    };
    Ok(DpvsClient::new(channel))
}

/// The most specific message in an error chain (`No such file or directory (os error 2)`).
fn innermost(e: &dyn std::error::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// One line for a failed call: the server's message (which names the problem),
/// or "cannot reach" when the daemon went away or the connection failed (a
/// status with a source came from the transport, not from dpvsd: e.g. a TLS
/// alert such as `received fatal alert: UnknownCA`).
pub fn status_error(server: &str, s: tonic::Status) -> CtlError {
    if s.source().is_some() || s.code() == tonic::Code::Unavailable {
        let detail = s
            .source()
            .map(innermost)
            .unwrap_or_else(|| s.message().to_string());
        return CtlError::failed(format!("cannot reach dpvsd at {server}: {detail}"));
    }
    CtlError::failed(s.message().replace('\n', " "))
}
