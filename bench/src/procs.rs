//! The processes under test (the worker binary, the ceiling loop) and what Linux says
//! about them: peak RSS (`VmHWM`), CPU time (`utime + stime`), plus the whole machine's
//! CPU and the broker's, to tell a slow worker from a saturated machine.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A started consumer: the worker or the ceiling loop.
pub struct Proc {
    child: Child,
    pid: u32,
    /// The worker's /metrics and /readyz port.
    http_port: Option<u16>,
    pub log: PathBuf,
}

impl Proc {
    /// Starts `pushwoosh-worker run` with `env` (everything else cleared but `REDIS_URL`, RUST_LOG unset so
    /// the default `info` applies), its stdout and stderr going to `log`, and waits until
    /// /readyz says it consumes.
    pub async fn worker(
        bin: &Path,
        env: &[(String, String)],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env(
                "PUSHWOOSH_WORKER__HTTP__LISTEN",
                format!("127.0.0.1:{port}"),
            )
            .current_dir(log.parent().unwrap_or(Path::new(".")))
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true);
        if let Ok(redis) = std::env::var("REDIS_URL") {
            cmd.env("REDIS_URL", redis);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut proc = Self {
            pid: child.id().context("the worker's pid")?,
            child,
            http_port: Some(port),
            log,
        };
        proc.wait_ready().await?;
        Ok(proc)
    }

    /// Starts the ceiling loop (this bench binary again) and waits for its "ready".
    pub async fn ceiling(
        url: &str,
        queue: &str,
        results_exchange: &str,
        prefetch: u16,
        ack_coalesce_ms: u64,
        hold: Duration,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let file = std::fs::File::create(&log)?;
        let mut child = Command::new(std::env::current_exe()?)
            .args([super::ceiling::SUBCOMMAND, url, queue, results_exchange])
            .arg(prefetch.to_string())
            .arg(ack_coalesce_ms.to_string())
            .arg(hold.as_micros().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .context("starting the ceiling loop")?;
        let stdout = child.stdout.take().context("the ceiling's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        if !matches!(ready, Ok(Ok(Some(ref l))) if l == "ready") {
            bail!("the ceiling loop did not start; see {}", log.display());
        }
        Ok(Self {
            pid: child.id().context("the ceiling's pid")?,
            child,
            http_port: None,
            log,
        })
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port.unwrap_or(0));
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the worker exited at start ({status}); the end of its log ({}):\n{}",
                    self.log.display(),
                    tail(&self.log, 15)
                );
            }
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the worker was not ready within 30 s; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU time used so far (user + system), ms.
    pub fn cpu_ms(&self) -> Option<f64> {
        cpu_ms_of(&format!("/proc/{}/stat", self.pid))
    }

    /// Peak resident set size so far, kB.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        status_kb(self.pid, "VmHWM:")
    }

    pub fn rss_kb(&self) -> Option<u64> {
        status_kb(self.pid, "VmRSS:")
    }

    /// The worker's /metrics address, if it is the worker.
    pub fn metrics_url(&self) -> Option<String> {
        Some(format!("http://127.0.0.1:{}/metrics", self.http_port?))
    }

    /// The worker's Prometheus text, if it is the worker.
    pub async fn metrics(&self) -> Option<String> {
        reqwest::get(self.metrics_url()?)
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// SIGTERM (a graceful stop, as an orchestrator would), then SIGKILL after 30 s (a
    /// worker under valgrind needs a while to write its profile).
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// SIGKILL at once, as a crash or an OOM kill would: nothing is handed back, and the
    /// broker returns the process's unacked jobs to the queue when its connection drops.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Sums a metric's samples whose label set contains every one of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// utime + stime of a /proc/…/stat file, ms.
pub fn cpu_ms_of(stat_path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 ("state").
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000.0 / clock_ticks())
}

fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The whole machine's CPU counters (/proc/stat), to say how busy it was during a run.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    pub fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let line = text.lines().next()?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let total: u64 = v.iter().take(8).sum();
        let idle = v.get(3)? + v.get(4).unwrap_or(&0);
        Some(Self {
            busy: total - idle,
            total,
        })
    }

    /// Busy share of all cores between `self` and `later`, 0..=1.
    pub fn busy_since(self, later: Self) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1);
        later.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

/// The RabbitMQ node's process: the one listening on the AMQP URL's port (a machine may
/// run more than one node, and `rabbitmqctl` starts a `beam.smp` of its own), else the
/// first `beam.smp`.
pub fn broker_pid(amqp_url: &str) -> Option<u32> {
    let port = url_port(amqp_url).unwrap_or(if amqp_url.starts_with("amqps:") {
        5671
    } else {
        5672
    });
    listener_pid(port).or_else(|| pid_named("beam.smp"))
}

/// The workers' ledger's Redis: `REDIS_URL`, which the bench passes on to them, else
/// the worker's default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The Redis server of the workers' ledger.
pub fn redis_pid() -> Option<u32> {
    listener_pid(url_port(&redis_url()).unwrap_or(6379))
}

/// The port of `scheme://[user:password@]host:port[/...]`, if it names one.
fn url_port(url: &str) -> Option<u16> {
    let rest = &url[url.find("://")? + 3..];
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    host.rsplit_once(':')?.1.parse().ok()
}

/// The process with a socket listening on this local TCP port.
fn listener_pid(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .find_map(|table| {
            let text = std::fs::read_to_string(table).ok()?;
            text.lines().skip(1).find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let local_port = u16::from_str_radix(f.get(1)?.rsplit(':').next()?, 16).ok()?;
                let listening = *f.get(3)? == "0A";
                let inode = f.get(9)?;
                (local_port == port && listening).then(|| inode.to_string())
            })
        })?;
    let target = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&target)))
            .then_some(pid)
    })
}

fn pid_named(comm: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (name.trim() == comm).then_some(pid)
    })
}

/// This process's CPU so far, ms (the bench: producer, collector and mock together).
pub fn own_cpu_ms() -> Option<f64> {
    cpu_ms_of("/proc/self/stat")
}

#[cfg(test)]
mod tests {
    use super::url_port;

    #[test]
    fn a_url_names_its_port_or_none() {
        assert_eq!(
            url_port("amqp://guest:guest@127.0.0.1:5772/%2f"),
            Some(5772)
        );
        assert_eq!(url_port("redis://127.0.0.1:6380"), Some(6380));
        assert_eq!(url_port("amqp://u:p@host/%2f"), None);
        assert_eq!(url_port("amqp://host"), None);
        assert_eq!(url_port(""), None);
    }
}
