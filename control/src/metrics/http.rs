//! The HTTP side of the metrics endpoint: `GET /metrics` answered with
//! [`super::render`] of a fresh [`super::Reading`], 404 elsewhere, on the
//! control runtime (hyper, HTTP/1.1). Bounded in connections and time, so slow
//! or broken clients cost little and bad requests never reach the dataplane.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};

use super::{render, Reading};
use crate::backend::Backend;

/// The content type of the text exposition format 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 64;
/// A client must send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection (however slowly it reads) lives longer than this.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// What a request gets, by method and path alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
}

pub fn route(method: &Method, path: &str) -> Route {
    match (path, method) {
        ("/metrics", &Method::GET | &Method::HEAD) => Route::Metrics,
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The connection sync daemons' counters, read with every scrape.
pub type SyncCounters = Option<Arc<crate::sync::Counters>>;

async fn handle<B>(
    req: Request<B>,
    backend: Arc<dyn Backend>,
    sync: SyncCounters,
) -> Response<Full<Bytes>> {
    match route(req.method(), req.uri().path()) {
        Route::NotFound => text(StatusCode::NOT_FOUND, "not found: try /metrics\n".into()),
        Route::MethodNotAllowed => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
            r.headers_mut().insert(
                hyper::header::ALLOW,
                hyper::header::HeaderValue::from_static("GET, HEAD"),
            );
            r
        }
        Route::Metrics => {
            let reading = tokio::task::spawn_blocking(move || {
                let mut r = Reading::of(backend.as_ref());
                if let Some(c) = sync {
                    r.sync = c.snapshot();
                }
                r
            })
            .await;
            match reading.map_err(|e| e.to_string()).and_then(|r| render(&r)) {
                Ok(body) => {
                    let mut r = text(StatusCode::OK, body);
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
                    );
                    r
                }
                Err(e) => {
                    eprintln!("dpvsd: metrics: {e}");
                    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
                }
            }
        }
    }
}

/// Binds the metrics listener (`[metrics] listen`).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics.listen: cannot listen on {addr}: {e}"))
}

/// Serves `GET /metrics` on `listener` until the runtime stops. Connections
/// past [`MAX_CONNECTIONS`] are closed at once; each has bounded time to send
/// its headers and a bounded life, so slow or broken clients cost little.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: Arc<dyn Backend>,
    sync: SyncCounters,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};

    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                eprintln!("dpvsd: metrics: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropping the stream closes it
        };
        let (backend, sync) = (backend.clone(), sync.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (backend, sync) = (backend.clone(), sync.clone());
                async move { Ok::<_, Infallible>(handle(req, backend, sync).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            // Errors are the client's (bad request, reset): nothing to do.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            drop(slot);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::FakeBackend;

    /// A backend with one worker's counters, and the text it renders to.
    fn backend() -> (Arc<dyn Backend>, String) {
        let b = FakeBackend::new(&["dpdk0"]);
        b.set_stats(dataplane::Stats {
            workers: vec![dataplane::WorkerStats {
                rx_packets: 42,
                conn_capacity: 1024,
                ..Default::default()
            }],
            ..Default::default()
        });
        let text = render(&Reading::of(&b)).unwrap();
        assert!(
            text.contains("dpvs_worker_rx_packets_total{worker=\"0\"} 42\n"),
            "{text}"
        );
        (Arc::new(b), text)
    }

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::HEAD, "/metrics"), Route::Metrics);
        assert_eq!(route(&Method::POST, "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route(&Method::GET, "/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metrics/"), Route::NotFound);
        assert_eq!(route(&Method::GET, "/metricsx"), Route::NotFound);
    }

    /// One request over a fresh connection: the raw answer.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        exchange_then(addr, request, false).await
    }

    /// The same, closing the sending side after the request when `eof`.
    async fn exchange_then(addr: SocketAddr, request: &[u8], eof: bool) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        if eof {
            s.shutdown().await.unwrap();
        }
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("answer within 10 s")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn serves_metrics_over_http_and_survives_bad_requests() {
        let (backend, want) = backend();
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, backend, None));

        let ok = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").await;
        let (head, body) = ok.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        assert_eq!(body, want);

        // Query strings do not matter; other paths and methods do.
        let q = exchange(addr, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(q.starts_with("HTTP/1.0 200 OK"), "{q}");
        let nf = exchange(addr, b"GET / HTTP/1.0\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.0 404 Not Found"), "{nf}");
        let post = exchange(addr, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.0 405"), "{post}");
        assert!(
            post.to_ascii_lowercase().contains("allow: get, head"),
            "{post}"
        );
        let head_only = exchange(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n").await;
        assert!(head_only.starts_with("HTTP/1.0 200 OK"), "{head_only}");
        assert!(head_only.ends_with("\r\n\r\n"), "no body: {head_only}");

        // Garbage gets a 400 or a closed connection, never a dead server.
        for junk in [
            &b"\x00\x01\x02garbage\r\n\r\n"[..],
            b"GET /metrics HTTP/9.9\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
            b"GET",
        ] {
            let a = exchange_then(addr, junk, true).await;
            assert!(
                a.is_empty() || a.starts_with("HTTP/1.1 400"),
                "{junk:?}: {a}"
            );
        }
        let again = exchange(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(again.starts_with("HTTP/1.1 200 OK"), "{again}");
        assert!(!server.is_finished());
        server.abort();
    }
}
