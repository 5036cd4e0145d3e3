//! The worker over TLS: a RabbitMQ node of the project's own (scripts/rabbitmq-node
//! "tls", an `amqps` listener on 127.0.0.1:5771) with a CA and a server certificate
//! made here with `openssl`. Trusting that CA (`amqp.tls.ca_file`), the worker connects
//! and processes a job; trusting another CA, it refuses the broker and says why; to a
//! node that asks for a client certificate (\"tls-mutual\", 5773) it shows the configured one.
//! `topology --check` reads the first node's management API over https (15771) the same way.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TestApp, answering_ok, push_job, test_settings};
use pushwoosh_worker::settings::AmqpSettings;
use tokio::sync::OnceCell;

const TLS_PORT: u16 = 5771;
/// The "tls" node's plain AMQP listener, for the test's own connections.
const PLAIN_URL: &str = "amqp://guest:guest@127.0.0.1:5772/%2f";
/// The "tls" node's management API, over https only.
const MANAGEMENT_URL: &str = "https://localhost:15771/";

/// Where the certificates live (readable by the broker's user).
fn dir() -> PathBuf {
    PathBuf::from(
        std::env::var("PUSHWOOSH_NODES_DIR").unwrap_or("/tmp/pushwoosh-worker-nodes".into()),
    )
    .join("tls-certs")
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA (`<name>.pem`, `<name>.key`).
fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-subj",
            &format!("/CN={name}"),
        ],
    );
}

/// The certificates: a CA, another CA, a server certificate and a client certificate,
/// both signed by the first CA. Made once.
async fn certificates() -> PathBuf {
    static MADE: OnceCell<PathBuf> = OnceCell::const_new();
    MADE.get_or_init(|| async {
            let dir = dir();
            std::fs::create_dir_all(&dir).unwrap();
            make_ca(&dir, "ca");
            make_ca(&dir, "other-ca");
            openssl(
                &dir,
                &[
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
                    "-out", "server.csr", "-subj", "/CN=localhost",
                ],
            );
            std::fs::write(
                dir.join("server.ext"),
                "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            openssl(
                &dir,
                &[
                    "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile",
                    "server.ext",
                ],
            );
            openssl(
                &dir,
                &[
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key",
                    "-out", "client.csr", "-subj", "/CN=pushwoosh-worker",
                ],
            );
            std::fs::write(
                dir.join("client.ext"),
                "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
            )
            .unwrap();
            openssl(
                &dir,
                &[
                    "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                    "-CAcreateserial", "-out", "client.pem", "-days", "2", "-extfile",
                    "client.ext",
                ],
            );
            // The broker runs as its own user: it must read them (test keys only).
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let _ = Command::new("chmod").arg("a+r").arg(&path).status();
            }
            let _ = Command::new("chmod").arg("a+rx").arg(&dir).status();
            dir
        })
        .await
        .clone()
}

/// Starts node `name` (plain AMQP on `port`, TLS on `tls_port`) unless it runs; with
/// `client_certificates`, it refuses a client that shows none its CA signed; with
/// `management_port`, its management API listens there over https only.
async fn start_node(
    name: &str,
    port: u16,
    tls_port: u16,
    client_certificates: bool,
    management_port: Option<u16>,
) -> String {
    let dir = certificates().await;
    let d = dir.display();
    let (verify, require) = if client_certificates {
        ("verify_peer", "true")
    } else {
        ("verify_none", "false")
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq-node");
    // A node left running by an earlier run holds certificates of another CA.
    let _ = tokio::process::Command::new(script)
        .args(["stop", name])
        .status()
        .await;
    let mut args = vec!["start".to_owned(), name.to_owned(), port.to_string()];
    if let Some(management) = management_port {
        args.extend([
            "--plugins".to_owned(),
            "rabbitmq_management".to_owned(),
            format!("management.ssl.port={management}"),
            "management.ssl.ip=127.0.0.1".to_owned(),
            format!("management.ssl.cacertfile={d}/ca.pem"),
            format!("management.ssl.certfile={d}/server.pem"),
            format!("management.ssl.keyfile={d}/server.key"),
        ]);
    }
    args.extend([
        format!("listeners.ssl.default={tls_port}"),
        format!("ssl_options.cacertfile={d}/ca.pem"),
        format!("ssl_options.certfile={d}/server.pem"),
        format!("ssl_options.keyfile={d}/server.key"),
        format!("ssl_options.verify={verify}"),
        format!("ssl_options.fail_if_no_peer_cert={require}"),
    ]);
    let status = tokio::process::Command::new(script)
        .args(&args)
        .status()
        .await
        .expect("scripts/rabbitmq-node runs");
    assert!(
        status.success(),
        "scripts/rabbitmq-node start {name} failed"
    );
    format!("amqps://guest:guest@localhost:{tls_port}/%2f")
}

/// The TLS node's URL (started when it is not running yet).
async fn tls_node() -> String {
    static STARTED: OnceCell<String> = OnceCell::const_new();
    STARTED
        .get_or_init(|| start_node("tls", 5772, TLS_PORT, false, Some(15771)))
        .await
        .clone()
}

/// A node that asks for a client certificate (TLS on 5773; started when not running).
async fn mutual_tls_node() -> String {
    static STARTED: OnceCell<String> = OnceCell::const_new();
    STARTED
        .get_or_init(|| start_node("tls-mutual", 5774, 5773, true, None))
        .await
        .clone()
}

#[tokio::test]
async fn trusting_the_brokers_ca_the_worker_connects_over_tls_and_processes_a_job() {
    let url = tls_node().await;
    let mock = answering_ok().await;
    let mut settings = test_settings(&mock.uri()).await;
    // The worker speaks TLS (`urls` wins over `url`); the test's own publisher and
    // watcher speak plain AMQP to the same node's other listener (`url`).
    settings.amqp.urls = vec![url];
    settings.amqp.url = PLAIN_URL.into();
    settings.amqp.tls.ca_file = Some(dir().join("ca.pem"));
    let mut app = TestApp::start(mock, settings.clone()).await;
    app.publish_job(&push_job("over-tls")).await;
    let r = app.next_result(Duration::from_secs(30)).await.body;
    assert_eq!(r["job_id"], "over-tls");
    assert_eq!(r["outcome"], "ok", "{r}");
    let (_, readyz) = common::http_get(app.http_addr, "/readyz").await;
    assert!(
        readyz.contains("amqps://guest:***@localhost:5771"),
        "{readyz}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_broker_certificate_from_another_ca_is_refused_and_the_error_says_so() {
    let url = tls_node().await;
    let amqp = AmqpSettings {
        url,
        tls: pushwoosh_worker::settings::AmqpTlsSettings {
            ca_file: Some(dir().join("other-ca.pem")),
            ..Default::default()
        },
        ..AmqpSettings::default()
    };
    let Err(error) =
        pushwoosh_worker::broker::connect(&amqp, "tls-test", Duration::from_secs(1)).await
    else {
        panic!("a broker certificate no trusted CA signed was accepted");
    };
    let error = format!("{error:#}");
    assert!(error.contains("not trusted"), "{error}");
    assert!(error.contains("amqp.tls.ca_file"), "{error}");
    assert!(!error.contains("guest:guest"), "no password: {error}");
}

#[tokio::test]
async fn a_broker_that_asks_for_a_client_certificate_takes_the_configured_one_and_refuses_none() {
    let url = mutual_tls_node().await;
    let dir = certificates().await;
    let mut amqp = AmqpSettings {
        url,
        ..AmqpSettings::default()
    };
    amqp.tls.ca_file = Some(dir.join("ca.pem"));
    let refused =
        pushwoosh_worker::broker::connect(&amqp, "tls-test", Duration::from_secs(1)).await;
    assert!(refused.is_err(), "no client certificate, yet connected");
    amqp.tls.cert_file = Some(dir.join("client.pem"));
    amqp.tls.key_file = Some(dir.join("client.key"));
    let connected = pushwoosh_worker::broker::connect(&amqp, "tls-test", Duration::from_secs(5))
        .await
        .expect("connects with the client certificate");
    assert!(connected.connection.status().connected());
    let _ = connected.connection.close(200, "done".into()).await;
}

#[tokio::test]
async fn topology_check_reads_the_management_api_over_https_trusting_the_configured_ca() {
    let url = tls_node().await;
    let mut settings = test_settings("http://127.0.0.1:9").await;
    // `topology` over amqps; `--check` then asks the management API over https, and
    // both trust the CA of amqp.tls.ca_file.
    settings.amqp.urls = vec![url];
    settings.amqp.url = PLAIN_URL.into();
    settings.amqp.tls.ca_file = Some(dir().join("ca.pem"));
    let (ok, out) = common::run_topology(&settings, &[]).await;
    assert!(ok, "{out}");
    let (ok, out) =
        common::run_topology(&settings, &["--check", "--management-url", MANAGEMENT_URL]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("queue {}: ok\n", settings.amqp.jobs_queue)),
        "the management API compared the jobs queue: {out}"
    );
    assert!(out.contains(" 0 missing, 0 differ, 0 not checked"), "{out}");

    // Trusting another CA, the API's certificate is refused and the error says so.
    settings.amqp.urls.clear();
    settings.amqp.tls.ca_file = Some(dir().join("other-ca.pem"));
    let out =
        common::topology_output(&settings, &["--check", "--management-url", MANAGEMENT_URL]).await;
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("the management API at https://localhost:15771/ does not answer"),
        "{error}"
    );
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    common::cleanup(&settings);
}
