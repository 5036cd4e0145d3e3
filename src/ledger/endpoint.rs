//! Where Redis is: `ledger.url` read as one node, a cluster or a Sentinel-watched master.
//! The `redis` crate reads one node's URL; the cluster and Sentinel forms list several
//! hosts, which no URL parser reads, so they are split here.

use redis::IntoConnectionInfo;

/// A parsed `ledger.url`. It may hold a password: its `Debug` shows none.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `redis://`, `rediss://`, `unix://` or `redis+unix://`: given to the crate as it is.
    Single(String),
    /// `redis+cluster://[user:password@]host1:port,host2:port`: one node URL per host,
    /// each with the credentials.
    Cluster(Vec<String>),
    /// `redis+sentinel://[user:password@]host1:port,host2:port/master_name[/db]`.
    Sentinel(SentinelEndpoint),
}

/// The Sentinel form: the sentinels to ask, and how to reach the master they name.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelEndpoint {
    /// `redis://host:port` (or `rediss://`) per sentinel, without credentials.
    pub sentinels: Vec<String>,
    pub master: String,
    pub tls: bool,
    pub db: i64,
    /// The master's credentials (percent-decoded).
    pub username: Option<String>,
    pub password: Option<String>,
}

const REDIS_PORT: u16 = 6379;
const SENTINEL_PORT: u16 = 26379;

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| anyhow::anyhow!("not a URL: it needs a scheme, e.g. redis://"))?;
        match scheme {
            "redis" | "rediss" | "unix" | "redis+unix" => {
                url.into_connection_info().map_err(|e| {
                    anyhow::anyhow!("not a Redis URL: {}", e.detail().unwrap_or(""))
                })?;
                Ok(Self::Single(url.to_owned()))
            }
            "redis+cluster" | "rediss+cluster" => {
                let base = &scheme[..scheme.len() - "+cluster".len()];
                let (userinfo, hosts, path) = split_authority(rest)?;
                anyhow::ensure!(
                    path.is_empty(),
                    "a cluster URL has no path: a cluster has only database 0"
                );
                let at = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                let base = format!("{base}://{at}");
                Ok(Self::Cluster(node_urls(&base, &hosts, REDIS_PORT)?))
            }
            "redis+sentinel" | "rediss+sentinel" => {
                let base = &scheme[..scheme.len() - "+sentinel".len()];
                let (userinfo, hosts, path) = split_authority(rest)?;
                let mut parts = path.split('/').filter(|p| !p.is_empty());
                let master = parts.next().ok_or_else(|| {
                    anyhow::anyhow!(
                        "a Sentinel URL names its master: redis+sentinel://host:26379/master_name"
                    )
                })?;
                let db = match parts.next() {
                    Some(db) => db
                        .parse()
                        .map_err(|_| anyhow::anyhow!("bad database number {db:?}"))?,
                    None => 0,
                };
                anyhow::ensure!(
                    parts.next().is_none(),
                    "a Sentinel URL's path is /master_name[/db]"
                );
                let (username, password) = match userinfo {
                    Some(info) => {
                        let (user, pass) = info.split_once(':').unwrap_or((info, ""));
                        (
                            Some(percent_decode(user)?).filter(|u| !u.is_empty()),
                            Some(percent_decode(pass)?).filter(|p| !p.is_empty()),
                        )
                    }
                    None => (None, None),
                };
                Ok(Self::Sentinel(SentinelEndpoint {
                    sentinels: node_urls(&format!("{base}://"), &hosts, SENTINEL_PORT)?,
                    master: percent_decode(master)?,
                    tls: base == "rediss",
                    db,
                    username,
                    password,
                }))
            }
            other => anyhow::bail!(
                "unknown scheme {other:?}: use redis://, rediss://, redis+cluster:// or redis+sentinel://"
            ),
        }
    }

    /// What the logs may say about it: the kind and the hosts, never a password.
    pub fn describe(&self) -> String {
        let host = |url: &str| {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            rest.split('/').next().unwrap_or(rest).to_owned()
        };
        match self {
            Self::Single(url) => format!("redis {}", host(url)),
            Self::Cluster(nodes) => {
                let hosts: Vec<String> = nodes.iter().map(|n| host(n)).collect();
                format!("cluster {}", hosts.join(","))
            }
            Self::Sentinel(s) => {
                let hosts: Vec<String> = s.sentinels.iter().map(|n| host(n)).collect();
                format!("sentinel {} master {}", hosts.join(","), s.master)
            }
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `[userinfo@]host1,host2[/path]`: the userinfo, the hosts, and the path after the `/`.
fn split_authority(rest: &str) -> anyhow::Result<(Option<&str>, Vec<&str>, &str)> {
    anyhow::ensure!(
        !rest.contains(['?', '#']),
        "query parameters are not read in cluster and Sentinel URLs"
    );
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((info, hosts)) => (Some(info), hosts),
        None => (None, authority),
    };
    let hosts: Vec<&str> = hosts.split(',').collect();
    anyhow::ensure!(
        hosts.iter().all(|h| !h.is_empty()),
        "a host is missing in the URL's host list"
    );
    Ok((userinfo, hosts, path))
}

/// `<base><host>:<port>` for each host (`port` when it names none), each a URL the crate reads.
fn node_urls(base: &str, hosts: &[&str], port: u16) -> anyhow::Result<Vec<String>> {
    hosts
        .iter()
        .map(|host| {
            let node = format!("{base}{}", with_port(host, port));
            node.as_str()
                .into_connection_info()
                .map_err(|_| anyhow::anyhow!("bad host {host:?}"))?;
            Ok(node)
        })
        .collect()
}

/// `host` with `port` appended when it names none (`[::1]` and `[::1]:7000` alike).
fn with_port(host: &str, port: u16) -> String {
    let has_port = match host.rfind(']') {
        Some(bracket) => host[bracket..].contains(':'),
        None => host.contains(':'),
    };
    if has_port {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    }
}

fn percent_decode(text: &str) -> anyhow::Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("bad percent-encoding in the URL"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("the URL's credentials are not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_urls_pass_through() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:secret@db:6379/2",
            "rediss://user:secret@db.example:6380",
            "unix:///run/redis.sock",
        ] {
            assert_eq!(Endpoint::parse(url).unwrap(), Endpoint::Single(url.into()));
        }
    }

    #[test]
    fn a_cluster_url_lists_its_nodes_with_the_credentials() {
        let e = Endpoint::parse("redis+cluster://u:p@a:7000,b,[::1]:7002").unwrap();
        assert_eq!(
            e,
            Endpoint::Cluster(vec![
                "redis://u:p@a:7000".into(),
                "redis://u:p@b:6379".into(),
                "redis://u:p@[::1]:7002".into(),
            ])
        );
        assert_eq!(format!("{e:?}"), "cluster a:7000,b:6379,[::1]:7002");
        assert!(Endpoint::parse("rediss+cluster://a:7000,b:7001").is_ok());
        assert!(Endpoint::parse("redis+cluster://a:7000/1").is_err());
        assert!(Endpoint::parse("redis+cluster://a:7000,,b").is_err());
    }

    #[test]
    fn a_sentinel_url_names_the_master_and_its_credentials() {
        let e = Endpoint::parse("rediss+sentinel://:p%40ss@s1,s2:5000/mymaster/3").unwrap();
        let Endpoint::Sentinel(s) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(s.sentinels, ["rediss://s1:26379", "rediss://s2:5000"]);
        assert_eq!(s.master, "mymaster");
        assert!(s.tls);
        assert_eq!(s.db, 3);
        assert_eq!(s.username, None);
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert!(!format!("{e:?}").contains("p@ss"), "{e:?}");
        assert!(Endpoint::parse("redis+sentinel://s1:26379").is_err());
        assert!(Endpoint::parse("redis+sentinel://s1/m/x").is_err());
    }

    #[test]
    fn other_urls_are_refused_with_a_reason() {
        for url in ["http://db:6379", "db:6379", "redis+cluster://a?x=1"] {
            assert!(Endpoint::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn descriptions_hide_passwords() {
        let e = Endpoint::parse("redis://user:hunter2@db:6379/1").unwrap();
        assert_eq!(e.describe(), "redis db:6379");
    }
}
