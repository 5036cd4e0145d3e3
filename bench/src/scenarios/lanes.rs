//! Lanes (issue #19): an urgent job's wait while a campaign saturates the account's rate
//! limit, and what the urgent traffic costs the campaign.

use super::super::broker::UrgentKind;
use super::super::run::{LanesMeasured, LanesSpec, UrgentLoad, measure_lanes};
use super::*;

/// The lanes scenario's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LanesArgs {
    /// Push jobs of the lanes scenario's campaign, queued on the bulk lane before the worker starts.
    #[arg(long = "lanes-jobs", id = "lanes_jobs", default_value_t = 100_000)]
    pub jobs: usize,
    /// One urgent job every this many ms (each value is a run of its own).
    #[arg(
        long = "lanes-interval-ms",
        id = "lanes_interval_ms",
        value_delimiter = ',',
        default_value = "100"
    )]
    pub interval_ms: Vec<u64>,
    /// The urgent jobs: an SMS, or a push for the campaign's application (each a run of its own).
    #[arg(
        long = "lanes-urgent",
        id = "lanes_urgent",
        value_enum,
        value_delimiter = ',',
        default_value = "sms,push"
    )]
    pub urgent: Vec<UrgentKind>,
    /// `lane`: urgent jobs with routing key urgent.otp (the urgent lane); `off`: with otp
    /// (the jobs queue, behind the campaign), for comparison.
    #[arg(
        long = "lanes-modes",
        id = "lanes_modes",
        value_enum,
        value_delimiter = ',',
        default_value = "lane,off"
    )]
    pub modes: Vec<LaneMode>,
    /// Mock latency (ms) for the lanes scenario.
    #[arg(
        long = "lanes-latency-ms",
        id = "lanes_latency_ms",
        default_value_t = 50
    )]
    pub latency_ms: u64,
    /// amqp.prefetch for the lanes scenario (the bulk lane's; a full batch of 100 fills
    /// while the one before it is called).
    #[arg(long = "lanes-prefetch", id = "lanes_prefetch", default_value_t = 1024)]
    pub prefetch: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LaneMode {
    Lane,
    Off,
}

impl LaneMode {
    fn routing_key(self) -> &'static str {
        match self {
            Self::Lane => "urgent.otp",
            Self::Off => "otp",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Lane => "lane",
            Self::Off => "lane off",
        }
    }
}

/// One configuration's runs: its label and urgent load, and each run measured.
struct Config {
    label: String,
    urgent: Option<(UrgentKind, u64, LaneMode)>,
    runs: Vec<LanesMeasured>,
}

/// Scenario 6: the campaign alone, then with urgent jobs on the lane and, for
/// comparison, on the jobs queue.
pub(super) async fn lanes(bench: &Bench, args: &Args) -> anyhow::Result<()> {
    let a = &args.lanes;
    println!(
        "\n== 6. lanes: {} push jobs queued on the bulk lane, the rate limiter and batching on their defaults, \
         prefetch {}, {} ms mock; an urgent {:?} every {:?} ms, {:?} ==",
        thousands(a.jobs as f64),
        a.prefetch,
        a.latency_ms,
        a.urgent,
        a.interval_ms,
        a.modes
    );
    println!(
        "  lane: routing key urgent.otp (the queue <jobs queue>.urgent, the worker's urgent lane); \
         lane off: routing key otp (the jobs queue, behind the campaign); publishing stops when the \
         campaign's results are all in"
    );
    let mut configs = vec![Config {
        label: "campaign alone".to_owned(),
        urgent: None,
        runs: Vec::new(),
    }];
    for &kind in &a.urgent {
        for &interval in &a.interval_ms {
            for &mode in &a.modes {
                configs.push(Config {
                    label: format!(
                        "+ urgent {} every {interval} ms, {}",
                        kind.name(),
                        mode.name()
                    ),
                    urgent: Some((kind, interval, mode)),
                    runs: Vec::new(),
                });
            }
        }
    }
    for _ in 0..args.runs {
        for c in &mut configs {
            let spec = LanesSpec {
                label: c.label.clone(),
                campaign: a.jobs,
                prefetch: a.prefetch,
                api_latency: Duration::from_millis(a.latency_ms),
                urgent: c.urgent.map(|(kind, ms, mode)| UrgentLoad {
                    kind,
                    interval: Duration::from_millis(ms),
                    routing_key: mode.routing_key().to_owned(),
                }),
            };
            let m = measure_lanes(bench, &spec)
                .await
                .with_context(|| format!("run {:?}", spec.label))?;
            row(&m);
            c.runs.push(m);
        }
    }
    summary(&configs);
    Ok(())
}

fn row(m: &LanesMeasured) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    let calls = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), thousands);
    println!(
        "  {:<36} campaign {}/s ({} of {} in {:.1} s, {} createMessage calls, {:.1} pushes a call)",
        m.label,
        thousands(m.bulk_per_s),
        thousands(m.collected.bulk as f64),
        thousands(m.campaign as f64),
        m.bulk_seconds,
        calls(m.create_message),
        m.collected.bulk as f64 / m.create_message.unwrap_or(0.0).max(1.0),
    );
    if m.urgent_published > 0 {
        let quarters: Vec<String> = m.quarter_p50s().iter().map(|v| format!("{v:.0}")).collect();
        let (shared, per_call) = m.urgent_batched();
        println!(
            "      urgent: {} of {} in, p50 {} ms, p99 {} ms, max {} ms; p50 by quarter of the run {} ms; \
             {} createSMSMessage calls; {shared} in a call with other jobs ({per_call:.1} jobs a call on average)",
            m.collected.urgent.len(),
            m.urgent_published,
            ms(m.urgent_pct(0.5)),
            ms(m.urgent_pct(0.99)),
            ms(m.urgent_pct(1.0)),
            quarters.join(", "),
            calls(m.create_sms),
        );
    }
    let mut notes = Vec::new();
    if let Some(b) = m.machine_busy {
        notes.push(format!("machine CPU {:.0}% busy", b * 100.0));
    }
    if let Some(c) = m.cpu_ms {
        let jobs = m.collected.bulk + m.collected.urgent.len();
        notes.push(format!(
            "worker CPU {:.1} s ({:.3} ms a job)",
            c / 1000.0,
            c / jobs.max(1) as f64
        ));
    }
    if let Some(kb) = m.peak_rss_kb {
        notes.push(format!("peak RSS {:.1} MB", kb as f64 / 1024.0));
    }
    notes.push(format!(
        "429s {}",
        m.http_429.map_or_else(|| "?".to_owned(), thousands)
    ));
    println!("      {}", notes.join(", "));
    let c = &m.collected;
    let mut problems = Vec::new();
    if let Some(why) = &c.stopped_short {
        problems.push(why.clone());
    }
    for (n, what) in [
        (c.bulk_not_ok, "campaign results not ok"),
        (m.urgent_not_ok(), "urgent results not ok"),
        (c.duplicates, "duplicate results"),
        (c.unknown, "results of no job of this run"),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if !problems.is_empty() {
        println!("      WARNING: {}", problems.join("; "));
    }
}

/// Each configuration against the targets: the urgent jobs' p50 and p99 (the mean over
/// runs), and the campaign's throughput against the campaign alone (the median of each
/// run's ratio to the campaign-alone run of the same round).
fn summary(configs: &[Config]) {
    let Some((alone, with_urgent)) = configs.split_first() else {
        return;
    };
    let rates = |c: &Config| -> Vec<f64> { c.runs.iter().map(|m| m.bulk_per_s).collect() };
    println!(
        "  campaign alone: {} pushes/s{}",
        thousands(mean(&rates(alone))),
        spread(&rates(alone))
    );
    for c in with_urgent {
        let Some((kind, interval, mode)) = c.urgent else {
            continue;
        };
        let p50 = mean(
            &c.runs
                .iter()
                .filter_map(|m| m.urgent_pct(0.5))
                .collect::<Vec<_>>(),
        );
        let p99 = mean(
            &c.runs
                .iter()
                .filter_map(|m| m.urgent_pct(0.99))
                .collect::<Vec<_>>(),
        );
        let ratios = paired_ratios(&rates(c), &rates(alone));
        let share = median(&ratios);
        let drop = (1.0 - share) * 100.0;
        let mut line = format!("  {}: urgent p50 {p50:.1} ms", c.label);
        if mode == LaneMode::Lane {
            line += &format!(
                " (target <= 120: {}), p99 {p99:.1} ms (target <= 250: {})",
                verdict(p50 <= 120.0),
                verdict(p99 <= 250.0)
            );
        } else {
            line += &format!(", p99 {p99:.1} ms");
        }
        line += &format!(
            "; campaign {} pushes/s = {:.1}% of the campaign alone{} (a drop of {drop:.1}%",
            thousands(mean(&rates(c))),
            share * 100.0,
            each_percent(&ratios)
        );
        line += &if mode == LaneMode::Lane {
            format!("; target <= 5%: {})", verdict(drop <= 5.0))
        } else {
            ")".to_owned()
        };
        println!("{line}");
        if kind == UrgentKind::Sms && mode == LaneMode::Lane && interval < 101 {
            println!(
                "      (an SMS every {interval} ms is {:.2} a second, more than createSMSMessage's default \
                 budget: 600 a minute spaced over 60.5 s, 9.92 a second; the p50 by quarter shows \
                 whether their wait grows)",
                1000.0 / interval as f64
            );
        }
    }
}
