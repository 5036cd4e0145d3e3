use super::*;

#[test]
fn renders_prefixed_names() {
    let m = Metrics::new();
    m.jobs
        .get_or_create(&JobLabels {
            kind: "push",
            outcome: "ok",
        })
        .inc();
    m.api_call_duration
        .get_or_create(&MethodLabels {
            method: "createMessage",
        })
        .observe(0.02);
    let text = m.render();
    assert!(
        text.contains(r#"pushwoosh_worker_jobs_total{kind="push",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("pushwoosh_worker_api_call_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("pushwoosh_worker_jobs_in_flight 0"), "{text}");
}

#[test]
fn known_series_start_at_zero() {
    let text = Metrics::new().render();
    for series in [
        r#"pushwoosh_worker_jobs_total{kind="sms",outcome="failed"} 0"#,
        r#"pushwoosh_worker_jobs_total{kind="unknown",outcome="rejected"} 0"#,
        r#"pushwoosh_worker_dead_letters_total{reason="poison"} 0"#,
        r#"pushwoosh_worker_breaker_transitions_total{to="open"} 0"#,
        r#"pushwoosh_worker_ledger_hits_total{kind="sms"} 0"#,
        r#"pushwoosh_worker_ledger_duplicates_refused_total{kind="whatsapp"} 0"#,
        r#"pushwoosh_worker_ledger_unknown_deliveries_total{kind="push"} 0"#,
        r#"pushwoosh_worker_ledger_unrecorded_total{kind="targeted"} 0"#,
        r#"pushwoosh_worker_ledger_redis_errors_total{operation="claim",error="unavailable"} 0"#,
        r#"pushwoosh_worker_ledger_redis_duration_seconds_count{operation="record"} 0"#,
        "pushwoosh_worker_ledger_available 0",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
    assert!(!text.contains(r#"kind="unknown",outcome="ok""#), "{text}");
}

#[test]
fn retry_reasons_are_words_where_there_is_no_status() {
    use std::time::Duration;
    let answer = |status| {
        Ok(HttpAnswer {
            status,
            body: bytes::Bytes::new(),
            retry_after: None,
        })
    };
    let timeout = Err(TransportError::Timeout {
        sent: true,
        after: Duration::from_secs(1),
    });
    let connect = Err(TransportError::Connect {
        message: "refused".into(),
    });
    let lost = Err(TransportError::Other {
        message: "reset".into(),
    });
    assert_eq!(retry_reason(&answer(500), Some(500)), "500");
    assert_eq!(retry_reason(&answer(429), Some(429)), "429");
    assert_eq!(retry_reason(&answer(200), Some(503)), "503");
    assert_eq!(retry_reason(&answer(200), None), "unreadable");
    assert_eq!(retry_reason(&timeout, None), "timeout");
    assert_eq!(retry_reason(&connect, None), "connect");
    assert_eq!(retry_reason(&lost, None), "transport");
}
