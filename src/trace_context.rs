//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) for jobs: a job may carry a
//! `traceparent` header (and `tracestate`); the worker continues that trace with a span
//! of its own for the job and hands the trace on to the job's result event.

use std::fmt;

use lapin::BasicProperties;
use serde::Serialize;

use crate::broker::publisher::header_str;

/// AMQP header names, as the HTTP ones: lowercase.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The `sampled` bit of trace-flags; the only flag version 00 defines.
const SAMPLED: u8 = 0x01;
/// Longer `tracestate` values may be dropped by the spec; we drop them whole.
const MAX_TRACESTATE: usize = 512;

/// A parsed `traceparent`: `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl TraceParent {
    /// Parses a header by the spec's rules: lowercase hex only, trace-id and parent-id not
    /// all zeros, version `ff` forbidden, version 00 exactly 55 characters. A later
    /// version is read for its first four fields when what follows them starts with `-`.
    pub fn parse(header: &str) -> Result<Self, Invalid> {
        let b = header.trim().as_bytes();
        if b.len() < 55 {
            return Err(Invalid("shorter than 55 characters"));
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(Invalid(
                "fields are not separated by '-' where they should be",
            ));
        }
        let version =
            hex::<1>(&b[0..2]).ok_or(Invalid("version is not 2 lowercase hex digits"))?[0];
        match version {
            0xff => return Err(Invalid("version ff is forbidden")),
            0x00 if b.len() != 55 => return Err(Invalid("version 00 is exactly 55 characters")),
            _ if b.len() > 55 && b[55] != b'-' => {
                return Err(Invalid("unexpected characters after trace-flags"));
            }
            _ => {}
        }
        let trace_id =
            hex::<16>(&b[3..35]).ok_or(Invalid("trace-id is not 32 lowercase hex digits"))?;
        if trace_id == [0; 16] {
            return Err(Invalid("trace-id is all zeros"));
        }
        let parent_id =
            hex::<8>(&b[36..52]).ok_or(Invalid("parent-id is not 16 lowercase hex digits"))?;
        if parent_id == [0; 8] {
            return Err(Invalid("parent-id is all zeros"));
        }
        let flags =
            hex::<1>(&b[53..55]).ok_or(Invalid("trace-flags is not 2 lowercase hex digits"))?[0];
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

/// Always version 00, the one this worker speaks.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            to_hex(&self.trace_id),
            to_hex(&self.parent_id),
            self.flags
        )
    }
}

/// A job's place in its trace: the producer's `traceparent`, the span the worker made
/// for the job, and the `tracestate` to pass on untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTrace {
    pub parent: TraceParent,
    pub span_id: [u8; 8],
    pub tracestate: Option<String>,
}

impl JobTrace {
    /// Continues the producer's trace with a new span id.
    pub fn continue_from(parent: TraceParent, tracestate: Option<String>) -> Self {
        Self {
            parent,
            span_id: fastrand::u64(1..).to_be_bytes(),
            tracestate,
        }
    }

    /// The trace a delivery carries, if its `traceparent` is valid. An invalid one is
    /// ignored (with a debug line), never a reason to fail the job.
    pub fn of(properties: &BasicProperties) -> Option<Self> {
        let header = header_str(properties, TRACEPARENT)?;
        let parent = match TraceParent::parse(&header) {
            Ok(parent) => parent,
            Err(why) => {
                tracing::debug!(traceparent = %header, %why, "invalid traceparent on the job: ignored");
                return None;
            }
        };
        let tracestate = header_str(properties, TRACESTATE).filter(|state| {
            let fine =
                state.len() <= MAX_TRACESTATE && state.bytes().all(|c| (b' '..=b'~').contains(&c));
            if !fine {
                tracing::debug!(
                    "tracestate longer than 512 characters or not printable ASCII: dropped"
                );
            }
            fine
        });
        Some(Self::continue_from(parent, tracestate))
    }

    /// The `traceparent` for what the job produces: the same trace, the worker's span as
    /// its parent, the producer's sampling decision.
    pub fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.parent.trace_id,
            parent_id: self.span_id,
            flags: self.parent.flags & SAMPLED,
        }
    }

    pub fn trace_id(&self) -> String {
        to_hex(&self.parent.trace_id)
    }

    /// The producer's span (the job's `traceparent` parent-id).
    pub fn parent_id(&self) -> String {
        to_hex(&self.parent.parent_id)
    }

    /// The worker's span for the job.
    pub fn span_id(&self) -> String {
        to_hex(&self.span_id)
    }
}

/// In a result event: `{"trace_id": …, "parent_id": …, "span_id": …}`.
impl Serialize for JobTrace {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Ids {
            trace_id: String,
            parent_id: String,
            span_id: String,
        }
        Ids {
            trace_id: self.trace_id(),
            parent_id: self.parent_id(),
            span_id: self.span_id(),
        }
        .serialize(serializer)
    }
}

/// Lowercase hex digits into N bytes; `None` for anything else (uppercase included).
fn hex<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{AMQPValue, FieldTable, LongString};

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specs_example() {
        let parent = TraceParent::parse(VALID).unwrap();
        assert_eq!(to_hex(&parent.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(to_hex(&parent.parent_id), "00f067aa0ba902b7");
        assert!(parent.sampled());
        let unsampled = VALID.replace("-01", "-00");
        assert!(!TraceParent::parse(&unsampled).unwrap().sampled());
    }

    #[test]
    fn round_trips() {
        for header in [
            VALID,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ] {
            assert_eq!(TraceParent::parse(header).unwrap().to_string(), header);
        }
    }

    #[test]
    fn refuses_what_the_spec_refuses() {
        let cases = [
            ("", "shorter than 55 characters"),
            (&VALID[..54], "shorter than 55 characters"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                "version 00 is exactly 55 characters",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff is forbidden",
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version is not 2 lowercase hex digits",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "trace-id is not 32 lowercase hex digits",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "trace-id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "parent-id is all zeros",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bZ-01",
                "parent-id is not 16 lowercase hex digits",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                "trace-flags is not 2 lowercase hex digits",
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "fields are not separated by '-' where they should be",
            ),
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
                "unexpected characters after trace-flags",
            ),
            // Multi-byte characters must not panic on a slice boundary.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
                "trace-id is not 32 lowercase hex digits",
            ),
        ];
        for (header, why) in cases {
            assert_eq!(TraceParent::parse(header), Err(Invalid(why)), "{header:?}");
        }
    }

    #[test]
    fn reads_a_later_version_for_its_first_fields() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
        assert_eq!(TraceParent::parse(later).unwrap().to_string(), VALID);
    }

    #[test]
    fn the_worker_continues_the_trace_with_a_span_of_its_own() {
        let parent = TraceParent::parse(&VALID.replace("-01", "-09")).unwrap();
        let trace = JobTrace::continue_from(parent, Some("congo=t61rcWkgMzE".into()));
        let out = trace.traceparent();
        assert_eq!(out.trace_id, parent.trace_id);
        assert_eq!(out.parent_id, trace.span_id);
        assert_ne!(trace.span_id, parent.parent_id);
        assert_ne!(trace.span_id, [0; 8]);
        assert_eq!(out.flags, 0x01, "sampled kept, undefined flags cleared");
        assert_eq!(
            serde_json::to_value(&trace).unwrap(),
            serde_json::json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                               "parent_id": "00f067aa0ba902b7",
                               "span_id": trace.span_id()})
        );
    }

    fn properties(headers: &[(&str, &str)]) -> BasicProperties {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert((*k).into(), AMQPValue::LongString(LongString::from(*v)));
        }
        BasicProperties::default().with_headers(table)
    }

    #[test]
    fn reads_the_amqp_headers_and_ignores_bad_ones() {
        let trace = JobTrace::of(&properties(&[
            (TRACEPARENT, VALID),
            (TRACESTATE, "a=1,b=2"),
        ]))
        .unwrap();
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.tracestate.as_deref(), Some("a=1,b=2"));
        assert_eq!(JobTrace::of(&properties(&[])), None);
        assert_eq!(JobTrace::of(&properties(&[(TRACEPARENT, "00-nope")])), None);
        let long = "k=".to_owned() + &"v".repeat(600);
        let trace =
            JobTrace::of(&properties(&[(TRACEPARENT, VALID), (TRACESTATE, &long)])).unwrap();
        assert_eq!(
            trace.tracestate, None,
            "an oversized tracestate is dropped, the trace kept"
        );
    }
}
