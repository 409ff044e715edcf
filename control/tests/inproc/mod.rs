//! An in-process dpvsd for the gRPC tests: the tonic server (`server::serve`,
//! as dpvsd runs it: Dpvs, reflection, health) over a `FakeBackend`, on a
//! temporary unix socket or on 127.0.0.1:0 with mutual TLS, driven by the same
//! `run_args` that the `dpvsctl` binary calls or by a raw tonic channel.
//!
//! `Daemon::stop` shuts the server down and waits for it; a daemon dropped
//! without it dies with the test's runtime. Nothing listens beyond loopback.
#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;

use control::backend::FakeBackend;
use control::config::Listen;
use control::ctl::{run_args, CtlError};
use control::server::{bind, bind_tls, serve, Bound, DpvsService};
use control::store::Store;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint, Uri};

/// The config the in-process daemon starts from (and `apply -f` tests edit).
pub const CONFIG: &str = r#"
[workers]
cores = [1]
[[port]]
name = "dpdk0"
device = "net_null0"
addresses = ["10.0.0.1/24"]
[[port]]
name = "dpdk1"
device = "net_null1"
addresses = ["192.168.0.1/24"]
"#;

pub struct Daemon {
    /// What `dpvsctl --server` takes: `unix:PATH` or `https://127.0.0.1:PORT`.
    pub server: String,
    pub backend: Arc<FakeBackend>,
    pub svc: Arc<DpvsService>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    pub async fn start() -> Daemon {
        Daemon::start_with_state(None).await
    }

    pub async fn start_with_state(state: Option<std::path::PathBuf>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/dpvs.sock");
        let bound = bind(&Listen::Unix(path.clone())).await.unwrap();
        Daemon::serve(bound, format!("unix:{}", path.display()), dir, state)
    }

    /// Serves on 127.0.0.1 (a free port) with mutual TLS from `tls`.
    pub async fn start_tls(tls: &control::tls::TlsPem) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let listen = Listen::Tcp("127.0.0.1:0".parse().unwrap());
        let bound = bind_tls(&listen, tls).await.unwrap();
        let addr = bound.local_addr().unwrap();
        Daemon::serve(bound, format!("https://{addr}"), dir, None)
    }

    fn serve(
        bound: Bound,
        server: String,
        dir: tempfile::TempDir,
        state: Option<std::path::PathBuf>,
    ) -> Daemon {
        let backend = Arc::new(FakeBackend::new(&["dpdk0", "dpdk1"]));
        let cfg = control::config::parse(CONFIG).unwrap();
        let store: Store = cfg.store;
        let svc = Arc::new(DpvsService::new(store, backend.clone()).with_state_file(state));
        // Health checks, as dpvsd runs them.
        tokio::spawn(svc.clone().apply_verdicts_forever());
        svc.start_checks();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(bound, svc.clone(), async {
            let _ = rx.await;
        }));
        Daemon {
            server,
            backend,
            svc,
            stop: Some(tx),
            task: Some(task),
            dir,
        }
    }

    /// A plain channel to a unix-socket daemon, for raw tonic clients.
    pub async fn channel(&self) -> Channel {
        let path = self
            .server
            .strip_prefix("unix:")
            .expect("a unix-socket daemon")
            .to_string();
        Endpoint::from_static("http://dpvsd.local")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                }
            }))
            .await
            .unwrap()
    }

    pub async fn ctl(&self, line: &str) -> Result<String, CtlError> {
        let mut argv: Vec<String> = vec!["--server".into(), self.server.clone()];
        argv.extend(line.split_whitespace().map(str::to_string));
        let mut out = String::new();
        run_args(&argv, None, &mut out).await.map(|()| out)
    }

    pub async fn ok(&self, line: &str) -> String {
        match self.ctl(line).await {
            Ok(o) => o,
            Err(e) => panic!("dpvsctl {line}: {e:?}"),
        }
    }

    pub async fn err(&self, line: &str) -> CtlError {
        match self.ctl(line).await {
            Ok(o) => panic!("dpvsctl {line} succeeded: {o}"),
            Err(e) => e,
        }
    }

    /// `dpvsctl -R` with `text` as its input.
    pub async fn restore(&self, text: &str) -> Result<(), CtlError> {
        let mut out = String::new();
        control::ctl::restore(text, &self.server.as_str().into(), &mut out).await
    }

    /// Each `(line, exit code, message)`: dpvsctl LINE fails so.
    pub async fn refuses(&self, cases: &[(&str, i32, &str)]) {
        for (line, code, msg) in cases {
            let e = self.err(line).await;
            assert_eq!(
                (e.code, e.message.as_str()),
                (*code, *msg),
                "dpvsctl {line}"
            );
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}
