//! Every example request of the Pushwoosh reference validates without an error: the examples
//! are copied, placeholders and all, into `seed_examples/*.json` (one entry each, with its
//! method and where in seeds 000-002 it comes from), and each is run through `validate`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::validate::{Options, Report, validate};

/// The fixtures, by file name: seed 000 (SMS), seed 001 (the Messages API) in two files, seed 002 (WhatsApp).
const FIXTURES: &[(&str, &str)] = &[
    ("000_sms.json", include_str!("seed_examples/000_sms.json")),
    (
        "001_create_message.json",
        include_str!("seed_examples/001_create_message.json"),
    ),
    (
        "001_other_methods.json",
        include_str!("seed_examples/001_other_methods.json"),
    ),
    (
        "002_whatsapp.json",
        include_str!("seed_examples/002_whatsapp.json"),
    ),
];

/// One entry of a fixture's "examples" or "left_out".
struct Example {
    id: String,
    method: String,
    source: String,
    /// The reference's `request` object as printed, `auth` included.
    printed: Map<String, Value>,
    entry: Map<String, Value>,
}

impl Example {
    /// The job's request: what was printed, minus `auth` (a job never carries it: the worker
    /// adds its token, and `job.rs` refuses a job that has one).
    fn job_request(&self) -> Map<String, Value> {
        let mut request = self.printed.clone();
        request.remove("auth");
        request
    }

    /// The job kind of the example's Pushwoosh method.
    fn kind(&self) -> &'static str {
        match self.method.as_str() {
            "createMessage" => "push",
            "createSMSMessage" => "sms",
            "createWhatsAppMessage" => "whatsapp",
            "createTargetedMessage" => "targeted",
            "cancelMessage" => "cancel",
            "deleteMessage" => "delete",
            "getMessageDetails" => "details",
            "getPushHistory" => "history",
            other => panic!("{}: unknown Pushwoosh method {other:?}", self.id),
        }
    }

    /// The report of the strictest configuration (unknown parameters rejected).
    fn validate(&self) -> Report {
        validate(self.kind(), &self.job_request(), &Options::default())
    }
}

fn text(entry: &Map<String, Value>, key: &str, file: &str) -> String {
    match entry.get(key) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        other => panic!("{file}: an entry's {key:?} must be a non-empty string, got {other:?}"),
    }
}

/// The entries under `list` ("examples" or "left_out") of every fixture.
fn entries(list: &str) -> Vec<Example> {
    let mut all = Vec::new();
    for (file, json) in FIXTURES {
        let fixture: Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
        let Some(items) = fixture.get(list) else {
            continue;
        };
        let items = items
            .as_array()
            .unwrap_or_else(|| panic!("{file}: {list:?} must be an array"));
        for item in items {
            let entry = item
                .as_object()
                .unwrap_or_else(|| panic!("{file}: each entry must be an object"))
                .clone();
            let printed = match entry.get("request") {
                Some(Value::Object(request)) => request.clone(),
                other => panic!("{file}: an entry's \"request\" must be an object, got {other:?}"),
            };
            all.push(Example {
                id: text(&entry, "id", file),
                method: text(&entry, "method", file),
                source: text(&entry, "source", file),
                printed,
                entry,
            });
        }
    }
    all
}

#[test]
fn every_reference_example_validates_without_errors() {
    let examples = entries("examples");
    assert!(!examples.is_empty());
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|example| {
            let report = example.validate();
            (!report.is_ok()).then(|| {
                let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
                format!("{} ({}): {errors:#?}", example.id, example.source)
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "reference examples refused:\n{}",
        failures.join("\n")
    );
}

/// The warnings the examples get, all of them: a new one on a reference example is a choice
/// to make here, not a side effect.
#[test]
fn reference_examples_warn_only_where_expected() {
    let warnings: Vec<String> = entries("examples")
        .iter()
        .flat_map(|example| {
            let id = example.id.clone();
            example
                .validate()
                .warnings
                .into_iter()
                .map(move |w| format!("{id}: {}", w.path))
        })
        .collect();
    assert_eq!(
        warnings,
        [
            // "devices" and "users" together: Pushwoosh ignores "devices".
            "001-create-message: notifications[0].devices",
            // The color placeholders "#rrggbb" and "#RRGGBB".
            "001-android: notifications[0].android_led",
            "001-android: notifications[0].android_ibc",
        ]
    );
}

/// The fixtures hold every example of the three seeds: pinned per method, so an entry
/// dropped by mistake fails here.
#[test]
fn the_fixtures_hold_every_reference_example() {
    let examples = entries("examples");
    let mut per_method: BTreeMap<&str, usize> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for example in &examples {
        assert!(
            ids.insert(example.id.as_str()),
            "duplicate id {}",
            example.id
        );
        example.kind();
        *per_method.entry(example.method.as_str()).or_default() += 1;
        // An entry without a note is a JSON example as printed, and every one of those carries "auth".
        if !example.entry.contains_key("note") {
            assert!(
                example.printed.contains_key("auth"),
                "{}: printed examples carry \"auth\"",
                example.id
            );
        }
    }
    let expected = BTreeMap::from([
        ("cancelMessage", 1),
        ("createMessage", 13),
        ("createSMSMessage", 1),
        ("createTargetedMessage", 14),
        ("createWhatsAppMessage", 3),
        ("deleteMessage", 2),
        ("getMessageDetails", 1),
        ("getPushHistory", 1),
    ]);
    assert_eq!(per_method, expected);
}

/// An example left out of the fixtures is one Pushwoosh itself refuses (a typo of the page):
/// it must be refused here too, with the error its entry names.
#[test]
fn left_out_examples_are_refused_as_pushwoosh_refuses_them() {
    let left_out = entries("left_out");
    assert_eq!(left_out.len(), 1);
    for example in &left_out {
        let why = text(&example.entry, "why", "left_out");
        let error = text(&example.entry, "error", "left_out");
        let report = example.validate();
        assert!(
            report.errors.iter().any(|p| p.message.contains(&error)),
            "{} ({}; {why}): expected an error containing {error:?}, got {:#?}",
            example.id,
            example.source,
            report.errors
        );
    }
}
