//! One connection to Redis, whatever its shape, that heals by itself: the crate's
//! `ConnectionManager` for one node; for a cluster and for Sentinel, a connection made
//! on first use and made again after it broke (Sentinel then names the master anew, so
//! a failover is followed). A batch of commands goes out as one pipeline; on a cluster,
//! whose pipelines may not cross slots, as one pipeline per slot, all sent at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisResult, Value};
use tokio::sync::Mutex;

use super::endpoint::{Endpoint, SentinelEndpoint};

#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Made(Arc<MadeOnDemand>),
}

/// A cluster or Sentinel connection, made when first needed.
pub(super) struct MadeOnDemand {
    maker: Maker,
    current: Mutex<Option<Made>>,
}

enum Maker {
    Cluster(ClusterClient),
    Sentinel(Mutex<SentinelClient>, AsyncConnectionConfig),
}

#[derive(Clone)]
enum Made {
    Cluster(ClusterConnection),
    Node(MultiplexedConnection),
}

impl Connection {
    /// Builds the connection without reaching Redis: a worker starts while Redis is down.
    pub(super) fn new(endpoint: &Endpoint, timeout: Duration) -> anyhow::Result<Self> {
        match endpoint {
            Endpoint::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(timeout);
                Ok(Self::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            Endpoint::Cluster(nodes) => {
                let client = ClusterClient::builder(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()?;
                Ok(Self::made(Maker::Cluster(client)))
            }
            Endpoint::Sentinel(s) => {
                let client = sentinel_client(s)?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                Ok(Self::made(Maker::Sentinel(Mutex::new(client), config)))
            }
        }
    }

    fn made(maker: Maker) -> Self {
        Self::Made(Arc::new(MadeOnDemand {
            maker,
            current: Mutex::new(None),
        }))
    }

    /// Sends the commands together and reads every reply, in order; a command's error
    /// is its reply (`Value::ServerError`), an error means some reply did not come.
    pub(super) async fn query(&self, commands: &[Routed]) -> RedisResult<Vec<Value>> {
        match self {
            Self::Single(manager) => pipeline(commands).query_async(&mut manager.clone()).await,
            Self::Made(made) => made.query(commands).await,
        }
    }
}

/// A command and the slot of the key it touches (`None`: it touches no key).
pub(super) struct Routed {
    pub cmd: Cmd,
    pub slot: Option<u16>,
}

impl Routed {
    pub(super) fn keyless(cmd: Cmd) -> Self {
        Self { cmd, slot: None }
    }

    pub(super) fn on_key(cmd: Cmd, key: &[u8]) -> Self {
        Self {
            cmd,
            slot: Some(slot(key)),
        }
    }
}

fn pipeline<'a>(commands: impl IntoIterator<Item = &'a Routed>) -> Pipeline {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for routed in commands {
        pipe.add_command(routed.cmd.clone());
    }
    pipe
}

/// One pipeline per slot, and each keyless command alone (so that the cluster client
/// routes it: `SCRIPT LOAD` to every primary), all sent at once.
async fn query_cluster(
    connection: &ClusterConnection,
    commands: &[Routed],
) -> RedisResult<Vec<Value>> {
    let mut groups: Vec<(Option<u16>, Vec<usize>)> = Vec::new();
    for (i, routed) in commands.iter().enumerate() {
        match groups
            .iter_mut()
            .find(|(slot, _)| slot.is_some() && *slot == routed.slot)
        {
            Some((_, members)) => members.push(i),
            None => groups.push((routed.slot, vec![i])),
        }
    }
    let answers = join_all(groups.iter().map(|(slot, members)| {
        let mut connection = connection.clone();
        async move {
            match slot {
                Some(_) => {
                    pipeline(members.iter().map(|&i| &commands[i]))
                        .query_async::<Vec<Value>>(&mut connection)
                        .await
                }
                None => commands[members[0]]
                    .cmd
                    .query_async::<Value>(&mut connection)
                    .await
                    .map(|v| vec![v]),
            }
        }
    }))
    .await;
    let mut replies = vec![Value::Nil; commands.len()];
    for ((_, members), answer) in groups.iter().zip(answers) {
        for (&i, reply) in members.iter().zip(answer?) {
            replies[i] = reply;
        }
    }
    Ok(replies)
}

/// Redis Cluster's slot of a key without a hash tag (the ledger's keys have none):
/// CRC16 (XMODEM) modulo 16384.
fn slot(key: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in key {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

impl MadeOnDemand {
    async fn query(&self, commands: &[Routed]) -> RedisResult<Vec<Value>> {
        let connection = self.connection().await?;
        let result = match connection {
            Made::Cluster(c) => query_cluster(&c, commands).await,
            Made::Node(mut c) => pipeline(commands).query_async(&mut c).await,
        };
        if let Err(e) = &result
            && broken(e)
        {
            *self.current.lock().await = None;
        }
        result
    }

    async fn connection(&self) -> RedisResult<Made> {
        let mut current = self.current.lock().await;
        if let Some(made) = current.as_ref() {
            return Ok(made.clone());
        }
        let made = match &self.maker {
            Maker::Cluster(client) => Made::Cluster(client.get_async_connection().await?),
            Maker::Sentinel(client, config) => Made::Node(
                client
                    .lock()
                    .await
                    .get_async_connection_with_config(config)
                    .await?,
            ),
        };
        *current = Some(made.clone());
        Ok(made)
    }
}

/// The connection is gone or points at a node that no longer serves writes.
fn broken(e: &RedisError) -> bool {
    e.is_unrecoverable_error()
        || e.is_io_error()
        || e.is_connection_dropped()
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
}

fn sentinel_client(s: &SentinelEndpoint) -> RedisResult<SentinelClient> {
    let mut redis = redis::RedisConnectionInfo::default().set_db(s.db);
    if let Some(user) = &s.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = &s.password {
        redis = redis.set_password(password);
    }
    let mut master = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
    if s.tls {
        master = master.set_tls_mode(redis::TlsMode::Secure);
    }
    SentinelClient::build(
        s.sentinels.clone(),
        s.master.as_str(),
        Some(master),
        SentinelServerType::Master,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b""), 0);
    }
}
