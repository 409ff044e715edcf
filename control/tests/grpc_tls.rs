//! The API over TCP with mutual TLS: dpvsd on 127.0.0.1 with a server
//! certificate and a client CA, each test's certificates made here (rcgen).
//! A client with a certificate from that CA gets through (`dpvsctl -Ln` via
//! `run_args`); one without a certificate, with one from another CA, or
//! speaking plain text does not.

mod inproc;

use std::path::{Path, PathBuf};

use control::tls::{TlsFiles, CONFIG_NAMES, CTL_NAMES};
use inproc::Daemon;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A CA and the PEM files it issued, in a temp dir.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `NAME-ca.pem`; `NAME-server.pem`/`-server.key` (SAN 127.0.0.1,
    /// localhost, ::1); `NAME-client.pem`/`-client.key`.
    fn issue(&self, name: &str) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        self.write(&format!("{name}-ca.pem"), &ca.pem());
        for (who, sans, usage) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".into(), "::1".into()],
                ExtendedKeyUsagePurpose::ServerAuth,
            ),
            ("client", vec![], ExtendedKeyUsagePurpose::ClientAuth),
        ] {
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name
                .push(DnType::CommonName, format!("{name} {who}"));
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &ca).unwrap();
            self.write(&format!("{name}-{who}.pem"), &cert.pem());
            self.write(&format!("{name}-{who}.key"), &key.serialize_pem());
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn files(&self, cert: &str, key: &str, ca: &str) -> TlsFiles {
        TlsFiles {
            cert: self.path(cert),
            key: self.path(key),
            ca: self.path(ca),
        }
    }
}

/// A PKI with two unrelated CAs, `good` and `other`.
fn pki() -> Pki {
    let pki = Pki {
        dir: tempfile::tempdir().unwrap(),
    };
    pki.issue("good");
    pki.issue("other");
    pki
}

async fn start(pki: &Pki) -> Daemon {
    let tls = pki
        .files("good-server.pem", "good-server.key", "good-ca.pem")
        .load(&CONFIG_NAMES)
        .unwrap();
    let d = Daemon::start_tls(&tls).await;
    assert!(d.server.starts_with("https://127.0.0.1:"), "{}", d.server);
    d
}

/// `dpvsctl --server https://... --tls-cert C --tls-key K --tls-ca CA ARGS`.
async fn ctl(d: &Daemon, pki: &Pki, files: [&str; 3], args: &str) -> Result<String, String> {
    let p = |n: &str| pki.path(n).display().to_string();
    let mut argv: Vec<String> = vec![
        "--server".into(),
        d.server.clone(),
        "--tls-cert".into(),
        p(files[0]),
        "--tls-key".into(),
        p(files[1]),
        "--tls-ca".into(),
        p(files[2]),
    ];
    argv.extend(args.split_whitespace().map(str::to_string));
    let mut out = String::new();
    control::ctl::run_args(&argv, None, &mut out)
        .await
        .map(|()| out)
        .map_err(|e| e.message)
}

const GOOD_CLIENT: [&str; 3] = ["good-client.pem", "good-client.key", "good-ca.pem"];

#[tokio::test]
async fn a_client_with_a_certificate_from_the_ca_gets_through() {
    let pki = pki();
    let d = start(&pki).await;
    ctl(&d, &pki, GOOD_CLIENT, "-A -t 10.0.0.100:80 -s rr")
        .await
        .unwrap();
    ctl(
        &d,
        &pki,
        GOOD_CLIENT,
        "-a -t 10.0.0.100:80 -r 192.168.0.11 -m",
    )
    .await
    .unwrap();
    let out = ctl(&d, &pki, GOOD_CLIENT, "-Ln").await.unwrap();
    assert!(
        out.contains("TCP  10.0.0.100:80 rr\n  -> 192.168.0.11:80"),
        "{out}"
    );
    assert_eq!(d.backend.current().unwrap().services.len(), 1);

    // The environment names the files as well as the options do.
    let env = control::ctl::Env {
        server: Some(d.server.clone()),
        tls_cert: Some(pki.path("good-client.pem").display().to_string()),
        tls_key: Some(pki.path("good-client.key").display().to_string()),
        tls_ca: Some(pki.path("good-ca.pem").display().to_string()),
    };
    let mut out = String::new();
    control::ctl::run_args_env(&["-Ln".to_string()], &env, &mut out)
        .await
        .unwrap();
    assert!(out.contains("10.0.0.100:80"), "{out}");

    // Health and reflection are on the TLS listener too.
    let pem = pki
        .files("good-client.pem", "good-client.key", "good-ca.pem")
        .load(&CTL_NAMES)
        .unwrap();
    let ch = Endpoint::from_shared(d.server.clone())
        .unwrap()
        .tls_config(pem.client_config())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "dpvs.v1.Dpvs".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        r.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    d.stop().await;
}

/// A raw tonic client with `tls` against `d`: its first call's error.
async fn refused(d: &Daemon, tls: Option<ClientTlsConfig>) -> String {
    let uri = match tls {
        Some(_) => d.server.clone(),
        // Plain HTTP/2 to the TLS port.
        None => d.server.replace("https://", "http://"),
    };
    let mut ep = Endpoint::from_shared(uri)
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(5));
    if let Some(t) = tls {
        ep = ep.tls_config(t).unwrap();
    }
    let ch = match ep.connect().await {
        Ok(ch) => ch,
        Err(e) => return format!("connect: {e:?}"),
    };
    let mut c = proto::v1::dpvs_client::DpvsClient::new(ch);
    match c
        .list_services(proto::v1::ListServicesRequest { key: None })
        .await
    {
        Ok(r) => panic!("the call went through: {r:?}"),
        Err(s) => format!("call: {s:?}"),
    }
}

fn pem(pki: &Pki, name: &str) -> Vec<u8> {
    std::fs::read(pki.path(name)).unwrap()
}

#[tokio::test]
async fn clients_without_the_right_certificate_are_rejected() {
    let pki = pki();
    let d = start(&pki).await;
    let ca = Certificate::from_pem(pem(&pki, "good-ca.pem"));

    // No client certificate: the handshake fails (TLS 1.3 reports it on the
    // first call).
    let why = refused(&d, Some(ClientTlsConfig::new().ca_certificate(ca.clone()))).await;
    assert!(
        why.contains("CertificateRequired") || why.contains("HandshakeFailure"),
        "{why}"
    );

    // A certificate from another CA.
    let other = Identity::from_pem(pem(&pki, "other-client.pem"), pem(&pki, "other-client.key"));
    let why = refused(
        &d,
        Some(ClientTlsConfig::new().ca_certificate(ca).identity(other)),
    )
    .await;
    assert!(
        why.contains("UnknownCA") || why.contains("BadCertificate"),
        "{why}"
    );

    // Plain text to the TLS port: the connection breaks, dpvsd never answers.
    let why = refused(&d, None).await;
    assert!(
        why.starts_with("connect:") || why.contains("transport error"),
        "{why}"
    );

    // dpvsctl says so in one line, exit status 1.
    let e = ctl(
        &d,
        &pki,
        ["other-client.pem", "other-client.key", "good-ca.pem"],
        "-Ln",
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "cannot reach dpvsd at {}: received fatal alert: UnknownCA",
            d.server
        )
    );
    assert!(!e.contains('\n'), "{e}");
    let e = ctl(&d, &pki, GOOD_CLIENT, "-Ln")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(e, Ok(()), "the right client still gets through");

    // dpvsctl checks dpvsd's certificate against --tls-ca too.
    let e = ctl(
        &d,
        &pki,
        ["good-client.pem", "good-client.key", "other-ca.pem"],
        "-Ln",
    )
    .await
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "cannot reach dpvsd at {}: invalid peer certificate: UnknownIssuer",
            d.server
        )
    );

    // Nothing changed through any of them.
    assert!(d.backend.current().is_none());
    d.stop().await;
}

#[tokio::test]
async fn dpvsctl_tls_options_are_checked_before_connecting() {
    let pki = pki();
    let run = |argv: &[&str]| {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        async move {
            let mut out = String::new();
            control::ctl::run_args(&argv, None, &mut out).await
        }
    };
    let cert = pki.path("good-client.pem").display().to_string();
    let key = pki.path("good-client.key").display().to_string();
    let ca = pki.path("good-ca.pem").display().to_string();

    // https:// needs all three files.
    let e = run(&[
        "--server",
        "https://127.0.0.1:1",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "-Ln",
    ])
    .await
    .unwrap_err();
    assert_eq!(e.code, 2);
    assert_eq!(
        e.message,
        "--server https://127.0.0.1:1: needs --tls-ca FILE (or $DPVS_TLS_CA): dpvsd takes only clients with a certificate"
    );
    // TLS files without https:// are a mistake.
    let e = run(&["--server", "unix:/tmp/none.sock", "--tls-ca", &ca, "-Ln"])
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            2,
            "option '--tls-ca' needs --server https://HOST:PORT (the server is unix:/tmp/none.sock)"
        )
    );
    // A bad file is named with its option before anything is dialled.
    let e = run(&[
        "--server",
        "https://127.0.0.1:1",
        "--tls-cert",
        &key,
        "--tls-key",
        &key,
        "--tls-ca",
        &ca,
        "-Ln",
    ])
    .await
    .unwrap_err();
    assert_eq!(e.code, 1);
    assert_eq!(
        e.message,
        format!("--tls-cert: {key}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)")
    );
}

#[test]
fn bad_pem_files_are_named_with_their_key() {
    let pki = pki();
    pki.write("garbage.pem", "hello\n");
    pki.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    );
    pki.write(
        "junk-der.pem",
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    );
    let load = |c: &str, k: &str, ca: &str| pki.files(c, k, ca).load(&CONFIG_NAMES).unwrap_err();
    let at = |n: &str| pki.path(n).display().to_string();
    let cases: Vec<(String, String)> = vec![
        (
            load("missing.pem", "good-server.key", "good-ca.pem"),
            format!(
                "control.tls_cert: {}: No such file or directory (os error 2)",
                at("missing.pem")
            ),
        ),
        (
            load("garbage.pem", "good-server.key", "good-ca.pem"),
            format!(
                "control.tls_cert: {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                at("garbage.pem")
            ),
        ),
        (
            load("broken.pem", "good-server.key", "good-ca.pem"),
            format!(
                "control.tls_cert: {}: not a PEM certificate file (",
                at("broken.pem")
            ),
        ),
        (
            load("junk-der.pem", "good-server.key", "good-ca.pem"),
            format!(
                "control.tls_cert: {}: invalid peer certificate",
                at("junk-der.pem")
            ),
        ),
        (
            load("good-server.pem", "good-server.pem", "good-ca.pem"),
            format!(
                "control.tls_key: {}: no PEM private key in it (-----BEGIN PRIVATE KEY-----)",
                at("good-server.pem")
            ),
        ),
        (
            load("good-server.pem", "other-server.key", "good-ca.pem"),
            format!(
                "control.tls_key: {} is not the key of the certificate in {} (control.tls_cert)",
                at("other-server.key"),
                at("good-server.pem")
            ),
        ),
        (
            load("good-server.pem", "good-server.key", "good-ca.key"),
            format!(
                "control.tls_client_ca: {}: No such file or directory (os error 2)",
                at("good-ca.key")
            ),
        ),
        (
            load("good-server.pem", "good-server.key", "junk-der.pem"),
            format!(
                "control.tls_client_ca: {}: certificate 1: ",
                at("junk-der.pem")
            ),
        ),
        (
            load("good-server.pem", "good-server.key", "."),
            format!(
                "control.tls_client_ca: {}: is a directory, not a PEM file",
                at(".")
            ),
        ),
    ];
    for (got, want) in cases {
        assert!(got.starts_with(&want), "got {got:?}\nwant {want:?}");
        assert!(!got.contains('\n'), "{got:?}");
    }
    // And the good set loads.
    pki.files("good-server.pem", "good-server.key", "good-ca.pem")
        .load(&CONFIG_NAMES)
        .unwrap();
}

#[tokio::test]
async fn tls_is_for_tcp_only() {
    let pki = pki();
    let tls = pki
        .files("good-server.pem", "good-server.key", "good-ca.pem")
        .load(&CONFIG_NAMES)
        .unwrap();
    let sock: &Path = &pki.path("x.sock");
    let e = control::server::bind_tls(&control::config::Listen::Unix(sock.into()), &tls)
        .await
        .err()
        .unwrap();
    assert!(e.contains("TLS is for TCP listeners"), "{e}");
    assert!(!sock.exists());
    // And plain TCP stays on loopback, whatever calls `bind`.
    let e = control::server::bind(&control::config::Listen::Tcp("0.0.0.0:0".parse().unwrap()))
        .await
        .err()
        .unwrap();
    assert_eq!(
        e,
        "0.0.0.0:0 is not loopback: the API listens there with mutual TLS only"
    );
}

#[test]
fn dpvsd_check_reads_the_tls_files() {
    let pki = pki();
    let config = pki.path("dpvs.toml");
    let check = |key: &str| {
        let text = format!(
            "{}\n[control]\nlisten = \"0.0.0.0:5000\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             tls_client_ca = \"{}\"\n",
            inproc::CONFIG,
            pki.path("good-server.pem").display(),
            pki.path(key).display(),
            pki.path("good-ca.pem").display()
        );
        std::fs::write(&config, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dpvsd"))
            .arg("--check")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = check("good-server.key");
    assert_eq!(code, Some(0));
    assert_eq!(stdout, format!("dpvsd: {}: ok\n", config.display()));
    let (code, _, stderr) = check("other-server.key");
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        format!(
            "dpvsd: control.tls_key: {} is not the key of the certificate in {} (control.tls_cert)\n",
            pki.path("other-server.key").display(),
            pki.path("good-server.pem").display()
        )
    );
}
