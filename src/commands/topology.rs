//! `pushwoosh-worker topology [--check]`: declares the exchanges, queues and bindings the
//! configuration implies (what the worker declares at start), or with `--check` verifies
//! them and creates nothing, for operators who provision ahead of deploys.
//!
//! `--check` proves existence with passive declares, each on a fresh channel (a failed
//! passive declare closes its channel). Those compare nothing else, and AMQP 0-9-1 has no
//! way to see a binding, so types, arguments and bindings are checked through the
//! management HTTP API when it answers, and reported as not checked otherwise.

use std::process::ExitCode;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ExchangeKind};

use crate::broker::management::{self, Management};
use crate::broker::topology::{Declaration, is_not_found};
use crate::broker::{self, Topology};
use crate::settings::Settings;

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Without --check, declares everything (idempotent: what exists with the same arguments is \
left as it is; something that exists with other arguments is an error, as it would be \
for the worker).

With --check, exit status 1 if anything is missing or differs. Types, arguments and \
bindings are checked only through the management API (by default on the broker's host, \
port 15672, with the AMQP URL's credentials, when it answers); without it, the output \
says what was not checked.")]
pub struct TopologyArgs {
    /// Verify, create nothing.
    #[arg(long)]
    pub check: bool,
    /// With --check: the RabbitMQ management API, e.g. http://user:pass@rabbitmq:15672
    /// (then it must answer).
    #[arg(
        long,
        value_name = "URL",
        requires = "check",
        conflicts_with = "no_management"
    )]
    pub management_url: Option<String>,
    /// With --check: do not use the management API.
    #[arg(long, requires = "check")]
    pub no_management: bool,
}

/// What `--check` found about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Ok,
    /// Exists; its type, arguments or bindings could not be looked at.
    Exists,
    Missing,
    Differs(Vec<String>),
    NotChecked,
}

pub async fn run(settings: &Settings, args: TopologyArgs) -> anyhow::Result<ExitCode> {
    let topology = Topology::new(settings);
    let conn = broker::connect(
        &settings.amqp,
        "pushwoosh-worker topology",
        Duration::from_millis(settings.amqp.startup_timeout_ms),
    )
    .await?
    .connection;
    let code = if args.check {
        let management = management_api(settings, &args).await?;
        check(&conn, &topology, management.as_ref()).await?
    } else {
        declare(&conn, &topology).await?
    };
    let _ = conn.close(200, "done".into()).await;
    Ok(code)
}

async fn declare(conn: &Connection, topology: &Topology) -> anyhow::Result<ExitCode> {
    let declarations = topology.declarations();
    let mut existed = Vec::with_capacity(declarations.len());
    for declaration in &declarations {
        existed.push(exists(conn, declaration).await?);
    }
    // The worker's own code path, so that this declares exactly what a worker would.
    topology.declare(conn).await?;
    for (declaration, existed) in declarations.iter().zip(existed) {
        let what = match (existed, declaration) {
            (Some(true), _) => "ok (already there)",
            (Some(false), _) => "created",
            (None, Declaration::Unbinding { .. }) => "removed if it was there",
            (None, _) => "bound",
        };
        println!("{}: {what}", declaration.describe());
    }
    println!("{} object(s) declared", declarations.len());
    earlier_retry_queues(conn, topology).await?;
    Ok(ExitCode::SUCCESS)
}

async fn check(
    conn: &Connection,
    topology: &Topology,
    management: Option<&Management>,
) -> anyhow::Result<ExitCode> {
    let mut counts = [0usize; 4];
    let mut missing_objects = Vec::new();
    for declaration in topology.declarations() {
        let finding = match exists(conn, &declaration).await? {
            Some(false) => Finding::Missing,
            // A binding of a missing queue or exchange is missing too (which is right
            // for a binding that must not be there).
            None if binds_any(&declaration, &missing_objects) => match declaration {
                Declaration::Unbinding { .. } => Finding::Ok,
                _ => Finding::Missing,
            },
            Some(true) | None => match management {
                Some(api) => look(api, &declaration).await?,
                None if declaration.is_binding() => Finding::NotChecked,
                None => Finding::Exists,
            },
        };
        let line = match &finding {
            Finding::Ok => "ok".to_owned(),
            Finding::Exists => "ok (exists; arguments not checked)".to_owned(),
            Finding::Missing => "missing".to_owned(),
            Finding::Differs(how) => format!("differs: {}", how.join("; ")),
            Finding::NotChecked => "not checked".to_owned(),
        };
        println!("{}: {line}", declaration.describe());
        if finding == Finding::Missing {
            missing_objects.push(declaration.clone());
        }
        counts[match finding {
            Finding::Ok | Finding::Exists => 0,
            Finding::Missing => 1,
            Finding::Differs(_) => 2,
            Finding::NotChecked => 3,
        }] += 1;
    }
    let [ok, missing, differ, not_checked] = counts;
    println!("{ok} ok, {missing} missing, {differ} differ, {not_checked} not checked");
    earlier_retry_queues(conn, topology).await?;
    Ok(if missing + differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Says which retry queues of an earlier version (a TTL and dead-lettering: see
/// [`Topology::earlier_retry_queue`]) are still there, and what they hold. They give their
/// parked jobs back by themselves, so nothing is moved: an operator deletes them once
/// they are empty and no worker of that version parks there any more.
async fn earlier_retry_queues(conn: &Connection, topology: &Topology) -> anyhow::Result<()> {
    for name in topology.earlier_retry_queues() {
        if let Some(messages) = queue_messages(conn, &name).await? {
            println!(
                "note: queue {name} is an earlier version's retry queue, holding {messages} parked job(s) that come back by themselves; delete it once it is empty and no earlier worker runs (rabbitmqctl delete_queue {name})"
            );
        }
    }
    Ok(())
}

/// A binding of a queue or exchange found missing.
fn binds_any(binding: &Declaration, missing: &[Declaration]) -> bool {
    let (queue, exchanges) = match binding {
        Declaration::Binding {
            queue, exchange, ..
        }
        | Declaration::Unbinding {
            queue, exchange, ..
        } => (Some(queue), [Some(exchange), None]),
        Declaration::ExchangeBinding {
            destination,
            source,
            ..
        } => (None, [Some(source), Some(destination)]),
        _ => return false,
    };
    missing.iter().any(|m| match m {
        Declaration::Queue { name, .. } => Some(name) == queue,
        Declaration::Exchange { name, .. } => exchanges.contains(&Some(name)),
        _ => false,
    })
}

/// The management API, or `None` (and a note saying what that leaves unchecked) when it
/// is not wanted or, at its default address, does not answer.
async fn management_api(
    settings: &Settings,
    args: &TopologyArgs,
) -> anyhow::Result<Option<Management>> {
    const UNCHECKED: &str = "types, arguments and bindings are not checked, only that \
                             exchanges and queues exist";
    if args.no_management {
        println!("note: --no-management: {UNCHECKED}");
        return Ok(None);
    }
    let api = Management::new(
        &settings.amqp.first_endpoint(),
        args.management_url.as_deref(),
    )?
    .trusting(settings.amqp.tls.ca_file.as_deref())?;
    match api.probe().await {
        Ok(()) => Ok(Some(api)),
        Err(error) if args.management_url.is_some() => Err(error.context(format!(
            "the management API at {} does not answer",
            api.base()
        ))),
        Err(error) => {
            println!(
                "note: no management API at {} ({}): {UNCHECKED} (see --management-url)",
                api.base(),
                root_cause(&error)
            );
            Ok(None)
        }
    }
}

fn root_cause(error: &anyhow::Error) -> String {
    let mut source: &dyn std::error::Error = error.as_ref();
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

/// Whether an exchange or queue exists (`None` for a binding), by a passive declare on a
/// channel of its own: a failed passive declare closes the channel.
async fn exists(conn: &Connection, declaration: &Declaration) -> anyhow::Result<Option<bool>> {
    let name = match declaration {
        Declaration::Queue { name, .. } => {
            return Ok(Some(queue_messages(conn, name).await?.is_some()));
        }
        Declaration::Exchange { name, .. } => name,
        Declaration::Binding { .. }
        | Declaration::ExchangeBinding { .. }
        | Declaration::Unbinding { .. } => return Ok(None),
    };
    let channel = conn.create_channel().await?;
    let answer = channel
        .exchange_declare(
            name.as_str().into(),
            // A passive declare compares no type.
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    match answer {
        Ok(()) => {
            let _ = channel.close(200, "checked".into()).await;
            Ok(Some(true))
        }
        Err(error) if is_not_found(&error) => Ok(Some(false)),
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "checking {} (passive declare)",
            declaration.describe()
        ))),
    }
}

/// The messages a queue holds (ready ones), by a passive declare on a channel of its own;
/// `None` when there is no such queue.
async fn queue_messages(conn: &Connection, name: &str) -> anyhow::Result<Option<u32>> {
    let channel = conn.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
    {
        Ok(queue) => {
            let _ = channel.close(200, "checked".into()).await;
            Ok(Some(queue.message_count()))
        }
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => {
            Err(anyhow::Error::new(error)
                .context(format!("checking queue {name} (passive declare)")))
        }
    }
}

/// What the management API says about an object known to exist (or a binding).
async fn look(api: &Management, declaration: &Declaration) -> anyhow::Result<Finding> {
    let differences = match declaration {
        Declaration::Exchange {
            name,
            kind,
            arguments,
        } => match api.exchange(name).await? {
            Some(actual) => management::exchange_differences(kind.as_str(), arguments, &actual),
            None => return Ok(Finding::Missing),
        },
        Declaration::Queue { name, arguments } => match api.queue(name).await? {
            Some(actual) => management::queue_differences(arguments, &actual),
            None => return Ok(Finding::Missing),
        },
        Declaration::Binding {
            queue,
            exchange,
            routing_key,
        } => {
            let keys = api.binding_keys(exchange, queue).await?;
            return Ok(present(&keys, routing_key));
        }
        Declaration::ExchangeBinding {
            destination,
            source,
            routing_key,
        } => {
            let keys = api.exchange_binding_keys(source, destination).await?;
            return Ok(present(&keys, routing_key));
        }
        Declaration::Unbinding {
            queue,
            exchange,
            routing_key,
        } => {
            let keys = api.binding_keys(exchange, queue).await?;
            return Ok(match present(&keys, routing_key) {
                Finding::Ok => {
                    Finding::Differs(vec!["still there (run topology to remove it)".to_owned()])
                }
                _ => Finding::Ok,
            });
        }
    };
    Ok(if differences.is_empty() {
        Finding::Ok
    } else {
        Finding::Differs(differences)
    })
}

/// Whether a binding with `routing_key` is among the `keys` the management API lists.
fn present(keys: &[String], routing_key: &str) -> Finding {
    if keys.iter().any(|k| k == routing_key) {
        Finding::Ok
    } else {
        Finding::Missing
    }
}
