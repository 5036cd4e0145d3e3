//! The RabbitMQ the tests run against: the machine's (or a container's), a vhost of a
//! test's own on it, and a small node of the project's own that refuses large messages.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::OnceCell;

struct Broker {
    url: String,
    _container: Option<Box<dyn std::any::Any + Send + Sync>>,
}

static BROKER: OnceCell<Broker> = OnceCell::const_new();

/// The broker: `AMQP_URL`, else one answering on 127.0.0.1:5672, else a testcontainer.
/// No broker is a failure, never a skip.
pub async fn broker_url() -> String {
    BROKER
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("AMQP_URL") {
                return Broker {
                    url,
                    _container: None,
                };
            }
            let local = "127.0.0.1:5672".parse::<SocketAddr>().unwrap();
            if std::net::TcpStream::connect_timeout(&local, Duration::from_secs(1)).is_ok() {
                return Broker {
                    url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
                    _container: None,
                };
            }
            start_container().await
        })
        .await
        .url
        .clone()
}

async fn start_container() -> Broker {
    use testcontainers::GenericImage;
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    let container = GenericImage::new("rabbitmq", "3.13-management")
        .with_exposed_port(5672.tcp())
        .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
        .start()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no RabbitMQ for the tests: AMQP_URL is unset, nothing answers on \
                 127.0.0.1:5672, and testcontainers could not start one ({e}). \
                 Start RabbitMQ (rabbitmq-server -detached) or set AMQP_URL."
            )
        });
    let port = container
        .get_host_port_ipv4(5672)
        .await
        .expect("container port");
    Broker {
        url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
        _container: Some(Box::new(container)),
    }
}

/// A random name part, so that tests running side by side never share a name.
pub fn uuid_like() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// Runs `rabbitmqctl` against the machine's broker; a failure fails the test.
pub fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (the tests need the machine's RabbitMQ and its CLI)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A vhost of the test's own on the machine's broker, with a user of its own, so that a
/// test can change permissions without touching any other test. Deleted on drop.
pub struct IsolatedVhost {
    pub name: String,
    pub user: String,
    /// The broker URL as the vhost's user.
    pub url: String,
}

impl IsolatedVhost {
    pub fn create() -> Self {
        let name = format!("pwt-{}", uuid_like());
        let user = format!("{name}-user");
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["add_user", &user, "secret"]);
        rabbitmqctl(&["set_permissions", "-p", &name, &user, ".*", ".*", ".*"]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        let url = format!("amqp://{user}:secret@127.0.0.1:5672/{name}");
        Self { name, user, url }
    }

    /// Sets the user's configure, write and read permissions (regular expressions).
    pub fn set_permissions(&self, configure: &str, write: &str, read: &str) {
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            &self.user,
            configure,
            write,
            read,
        ]);
    }
}

impl Drop for IsolatedVhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_user", &self.user])
            .output();
    }
}

/// The broker's `max_message_size` on the node of [`small_node_url`].
pub const SMALL_NODE_MAX_MESSAGE: usize = 65_536;

/// A RabbitMQ node of the project's own (scripts/rabbitmq-node) that refuses messages
/// over [`SMALL_NODE_MAX_MESSAGE`] bytes, started when it is not running yet. The
/// machine's broker is left as it is.
pub async fn small_node_url() -> String {
    static STARTED: OnceCell<String> = OnceCell::const_new();
    STARTED
        .get_or_init(|| async {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbitmq-node");
            let limit = format!("max_message_size={SMALL_NODE_MAX_MESSAGE}");
            let status = tokio::process::Command::new(script)
                .args(["start", "small", "5682", &limit])
                .status()
                .await
                .expect("scripts/rabbitmq-node runs");
            assert!(status.success(), "scripts/rabbitmq-node start small failed");
            "amqp://guest:guest@127.0.0.1:5682/%2f".to_owned()
        })
        .await
        .clone()
}
