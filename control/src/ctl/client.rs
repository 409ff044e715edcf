//! Connecting `dpvsctl` to dpvsd (unix socket or loopback TCP) and turning gRPC
//! failures into one-line messages.

use std::error::Error as _;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use proto::v1::dpvs_client::DpvsClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::CtlError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `unix:PATH` or `host:port` (an `http://` prefix is accepted).
pub async fn connect(server: &str) -> Result<DpvsClient<Channel>, CtlError> {
    let unreachable = |e: &dyn std::error::Error| {
        CtlError::failed(format!("cannot reach dpvsd at {server}: {}", innermost(e)))
    };
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
    } else {
        let uri = if server.starts_with("http://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        Endpoint::from_shared(uri)
            .map_err(|_| CtlError::usage(format!("invalid server address \"{server}\"")))?
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
/// or "cannot reach" when the daemon went away.
pub fn status_error(server: &str, s: tonic::Status) -> CtlError {
    use tonic::Code;
    match s.code() {
        Code::Unavailable => {
            let detail = s
                .source()
                .map(innermost)
                .unwrap_or_else(|| s.message().to_string());
            CtlError::failed(format!("cannot reach dpvsd at {server}: {detail}"))
        }
        _ => CtlError::failed(s.message().replace('\n', " ")),
    }
}
