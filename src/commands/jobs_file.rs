//! Reading jobs from a file or stdin: one JSON value, a JSON array of jobs, or
//! newline-delimited JSON (any sequence of JSON values).

use std::io::Read;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

/// One job as read, with where it came from (`file:line`).
#[derive(Debug, Clone)]
pub struct JobEntry {
    pub location: String,
    pub value: Value,
}

/// Reads `path`, or stdin when it is `-` or absent.
pub fn read(path: Option<&Path>) -> anyhow::Result<(String, Vec<u8>)> {
    match path {
        Some(p) if p != Path::new("-") => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            Ok((p.display().to_string(), bytes))
        }
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("reading stdin")?;
            Ok(("<stdin>".to_owned(), bytes))
        }
    }
}

/// Splits the input into jobs. A top-level array is a list of jobs.
pub fn parse(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<JobEntry>> {
    let mut entries = Vec::new();
    let stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let mut stream = stream;
    loop {
        let start = skip_whitespace(bytes, stream.byte_offset());
        match stream.next() {
            None => break,
            Some(Ok(Value::Array(items))) => {
                let line = line_of(bytes, start);
                for (i, value) in items.into_iter().enumerate() {
                    entries.push(JobEntry {
                        location: format!("{name}:{line}[{i}]"),
                        value,
                    });
                }
            }
            Some(Ok(value)) => entries.push(JobEntry {
                location: format!("{name}:{}", line_of(bytes, start)),
                value,
            }),
            Some(Err(e)) => {
                anyhow::bail!("{name}:{}: not JSON: {e}", e.line());
            }
        }
    }
    Ok(entries)
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() && bytes[at].is_ascii_whitespace() {
        at += 1;
    }
    at
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_an_array_or_ndjson() {
        assert_eq!(parse("f", br#"{"id":"a"}"#).unwrap().len(), 1);
        let array = parse("f", b"[{\"id\":\"a\"},\n{\"id\":\"b\"}]").unwrap();
        assert_eq!(array[1].location, "f:1[1]");
        let nd = parse("f", b"{\"id\":\"a\"}\n\n{\"id\":\"b\"}\n").unwrap();
        assert_eq!(nd.len(), 2);
        assert_eq!(nd[1].location, "f:3");
        let err = parse("f", b"{\"id\":\"a\"}\n{oops\n").unwrap_err();
        assert!(err.to_string().starts_with("f:2: not JSON"), "{err}");
    }
}
