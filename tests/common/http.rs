//! The worker's HTTP side as a test reaches it: a GET, waiting for /readyz, a free port.

use std::net::SocketAddr;
use std::time::Duration;

/// A minimal HTTP GET, returning (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    match reqwest::get(url).await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Whether the worker listening on `addr` answers /readyz with 200 within `within`
/// (polled every 50 ms).
pub async fn wait_ready(addr: SocketAddr, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if http_get(addr, "/readyz").await.0 == 200 {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A local address with a port free right now, for a worker's HTTP listener that a test
/// must know in advance.
pub fn free_local_addr() -> SocketAddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    SocketAddr::from(([127, 0, 0, 1], port))
}
