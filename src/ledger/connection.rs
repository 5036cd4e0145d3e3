//! One connection to Redis, whatever its shape, that heals by itself: the crate's
//! `ConnectionManager` for one node; for a cluster and for Sentinel, a connection made
//! on first use and made again after it broke (Sentinel then names the master anew, so
//! a failover is followed).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Pipeline, RedisError, RedisResult, Value};
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

    /// Sends the pipeline in one write and reads every reply; a command's error is its
    /// reply (`Value::ServerError`), the pipeline's error means no reply came.
    pub(super) async fn query(&self, pipe: &Pipeline) -> RedisResult<Vec<Value>> {
        match self {
            Self::Single(manager) => pipe.query_async(&mut manager.clone()).await,
            Self::Made(made) => made.query(pipe).await,
        }
    }
}

impl MadeOnDemand {
    async fn query(&self, pipe: &Pipeline) -> RedisResult<Vec<Value>> {
        let connection = self.connection().await?;
        let result = match connection {
            Made::Cluster(mut c) => pipe.query_async(&mut c).await,
            Made::Node(mut c) => pipe.query_async(&mut c).await,
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
