//! How a job sits in Redis, in as few bytes as Redis's memory classes reward: its key is
//! a digest of its id, its value a claim or a compact record of Pushwoosh's answer.
//!
//! Key: `<key_prefix>j:` + 17 base64url characters (102 bits of the id's SHA-256): 29
//! bytes with the default prefix, which Redis keeps in a 32-byte allocation.
//!
//! Value, first byte (the tag):
//! - `0xC0`: a claim, then the owner (8 bytes) and the claim's time (8 bytes, ms), big-endian.
//! - `0b00SS_SSOO`: a record. `OO` is the outcome (ok, rejected, failed); `SSSS` the
//!   status code: 0 none, 1–14 a common code from [`STATUSES`], 15 a zigzag varint
//!   follows. Then each message code: `0` and 10 bytes for a code shaped like
//!   Pushwoosh's (`XXXX-XXXXXXXX-XXXXXXXX`, uppercase hex), or a varint `len + 1` and the
//!   code's bytes. A push's record (ok, 200, one code) is 12 bytes, which Redis keeps
//!   with its object header in one 32-byte allocation.
//!
//! Decoding never panics: anything else is [`Held::Unreadable`].

use sha2::{Digest, Sha256};

use crate::result_event::Outcome;

/// Pushwoosh's answer for a job, as remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub outcome: Outcome,
    pub status_code: Option<i64>,
    pub message_codes: Vec<String>,
}

/// What a job's key holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Claim {
        owner: u64,
        since_ms: i64,
    },
    Record(Recorded),
    /// Not a value this worker writes (another program's, or a later version's).
    Unreadable,
}

pub const CLAIM_TAG: u8 = 0xC0;
const CLAIM_LEN: usize = 17;
const STATUS_VARINT: u8 = 15;
const PACKED_CODE: u8 = 0;
const PACKED_CODE_LEN: usize = 10;
/// Status codes stored in the tag itself (index + 1).
const STATUSES: [i64; 14] = [
    200, 210, 400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504,
];
const KEY_DIGEST_CHARS: usize = 17;
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The Redis key of a job id.
pub fn job_key(prefix: &str, job_id: &str) -> Vec<u8> {
    let digest = Sha256::digest(job_id.as_bytes());
    let mut key = Vec::with_capacity(prefix.len() + 2 + KEY_DIGEST_CHARS);
    key.extend_from_slice(prefix.as_bytes());
    key.extend_from_slice(b"j:");
    // 13 bytes make 18 characters of 6 bits; the first 17 are kept.
    let mut bits = 0u32;
    let mut pending = 0u32;
    for &byte in &digest[..13] {
        bits = (bits << 8) | u32::from(byte);
        pending += 8;
        while pending >= 6 && key.len() < prefix.len() + 2 + KEY_DIGEST_CHARS {
            pending -= 6;
            key.push(BASE64URL[((bits >> pending) & 63) as usize]);
        }
    }
    key
}

/// 16 hex characters of a secret's SHA-256: names an account without revealing it.
pub fn fingerprint(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn encode_claim(owner: u64, since_ms: i64) -> Vec<u8> {
    let mut value = Vec::with_capacity(CLAIM_LEN);
    value.push(CLAIM_TAG);
    value.extend_from_slice(&owner.to_be_bytes());
    value.extend_from_slice(&since_ms.to_be_bytes());
    value
}

/// The owner's bytes as a claim stores them (what `release` compares).
pub fn owner_bytes(owner: u64) -> [u8; 8] {
    owner.to_be_bytes()
}

pub fn encode_record(record: &Recorded) -> Vec<u8> {
    let outcome = match record.outcome {
        Outcome::Ok => 0u8,
        Outcome::Rejected => 1,
        Outcome::Failed => 2,
    };
    let status = match record.status_code {
        None => 0u8,
        Some(code) => STATUSES
            .iter()
            .position(|s| *s == code)
            .map_or(STATUS_VARINT, |i| i as u8 + 1),
    };
    let mut value = Vec::with_capacity(1 + 11 * record.message_codes.len());
    value.push((status << 2) | outcome);
    if status == STATUS_VARINT {
        let code = record.status_code.unwrap_or_default();
        put_varint(&mut value, ((code << 1) ^ (code >> 63)) as u64);
    }
    for code in &record.message_codes {
        match pack_code(code) {
            Some(packed) => {
                value.push(PACKED_CODE);
                value.extend_from_slice(&packed);
            }
            None => {
                put_varint(&mut value, code.len() as u64 + 1);
                value.extend_from_slice(code.as_bytes());
            }
        }
    }
    value
}

pub fn decode(value: &[u8]) -> Held {
    match value.first() {
        Some(&CLAIM_TAG) if value.len() == CLAIM_LEN => {
            let owner = u64::from_be_bytes(value[1..9].try_into().unwrap_or_default());
            let since_ms = i64::from_be_bytes(value[9..17].try_into().unwrap_or_default());
            Held::Claim { owner, since_ms }
        }
        Some(&tag) if tag >> 6 == 0 => {
            decode_record(tag, &value[1..]).map_or(Held::Unreadable, Held::Record)
        }
        _ => Held::Unreadable,
    }
}

fn decode_record(tag: u8, mut rest: &[u8]) -> Option<Recorded> {
    let outcome = match tag & 3 {
        0 => Outcome::Ok,
        1 => Outcome::Rejected,
        2 => Outcome::Failed,
        _ => return None,
    };
    let status_code = match tag >> 2 {
        0 => None,
        STATUS_VARINT => {
            let zigzag = take_varint(&mut rest)?;
            Some((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
        }
        i => Some(STATUSES[usize::from(i) - 1]),
    };
    let mut message_codes = Vec::new();
    while !rest.is_empty() {
        let head = take_varint(&mut rest)?;
        let code = if head == u64::from(PACKED_CODE) {
            let (packed, tail) = rest.split_at_checked(PACKED_CODE_LEN)?;
            rest = tail;
            unpack_code(packed)
        } else {
            let len = usize::try_from(head - 1).ok()?;
            let (text, tail) = rest.split_at_checked(len)?;
            rest = tail;
            String::from_utf8(text.to_vec()).ok()?
        };
        message_codes.push(code);
    }
    Some(Recorded {
        outcome,
        status_code,
        message_codes,
    })
}

/// `XXXX-XXXXXXXX-XXXXXXXX` in uppercase hex as 10 bytes; anything else stays text, so
/// that the code comes back exactly as Pushwoosh wrote it.
fn pack_code(code: &str) -> Option<[u8; PACKED_CODE_LEN]> {
    let b = code.as_bytes();
    if b.len() != 22 || b[4] != b'-' || b[13] != b'-' {
        return None;
    }
    let mut out = [0u8; PACKED_CODE_LEN];
    let digits = b.iter().filter(|c| **c != b'-');
    for (i, c) in digits.enumerate() {
        let nibble = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        out[i / 2] |= nibble << if i % 2 == 0 { 4 } else { 0 };
    }
    Some(out)
}

fn unpack_code(packed: &[u8]) -> String {
    let hex: String = packed.iter().map(|b| format!("{b:02X}")).collect();
    format!("{}-{}-{}", &hex[..4], &hex[4..12], &hex[12..])
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for (i, &byte) in input.iter().enumerate().take(10) {
        n |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(outcome: Outcome, status_code: Option<i64>, codes: &[&str]) -> Recorded {
        Recorded {
            outcome,
            status_code,
            message_codes: codes.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn a_push_record_fits_in_twelve_bytes() {
        let r = record(Outcome::Ok, Some(200), &["C3F8-C3863ED4-334AD4F1"]);
        let value = encode_record(&r);
        assert_eq!(value.len(), 12, "{value:?}");
        assert_eq!(decode(&value), Held::Record(r));
    }

    #[test]
    fn records_round_trip() {
        for r in [
            record(Outcome::Ok, Some(200), &[]),
            record(Outcome::Rejected, Some(210), &[]),
            record(Outcome::Failed, None, &[]),
            record(Outcome::Failed, Some(-7), &["x"]),
            record(
                Outcome::Ok,
                Some(299),
                &["c3f8-c3863ed4-334ad4f1", "ÄBC", ""],
            ),
            record(Outcome::Ok, Some(i64::MIN), &["C3F8-C3863ED4-334AD4F1"; 3]),
            record(Outcome::Ok, Some(i64::MAX), &[&"z".repeat(300)]),
        ] {
            assert_eq!(decode(&encode_record(&r)), Held::Record(r.clone()), "{r:?}");
        }
    }

    #[test]
    fn claims_round_trip_and_are_not_records() {
        let value = encode_claim(u64::MAX - 1, 1_796_330_788_084);
        assert_eq!(
            decode(&value),
            Held::Claim {
                owner: u64::MAX - 1,
                since_ms: 1_796_330_788_084
            }
        );
        assert_eq!(&value[1..9], owner_bytes(u64::MAX - 1));
    }

    #[test]
    fn foreign_values_are_unreadable() {
        for value in [
            &b""[..],
            b"hello",
            &[CLAIM_TAG, 1, 2],
            &[0b11],
            &[0, 0],
            &[0, 5, b'a'],
            &[STATUS_VARINT << 2, 0x80],
            &[0, 0, 1, 2],
            &[0b0100_0000],
        ] {
            assert_eq!(decode(value), Held::Unreadable, "{value:?}");
        }
    }

    #[test]
    fn keys_are_short_digests_of_the_id() {
        let key = job_key("pushwoosh:", "3f2c1b9e-8d4a-4e1f-9b7c-2a5d6e8f0a1b");
        assert_eq!(key.len(), 29);
        assert!(key.starts_with(b"pushwoosh:j:"));
        assert!(key[12..].iter().all(|c| BASE64URL.contains(c)));
        assert_ne!(
            key,
            job_key("pushwoosh:", "3f2c1b9e-8d4a-4e1f-9b7c-2a5d6e8f0a1c")
        );
        assert_eq!(
            key,
            job_key("pushwoosh:", "3f2c1b9e-8d4a-4e1f-9b7c-2a5d6e8f0a1b")
        );
    }

    #[test]
    fn fingerprints_hide_the_token() {
        let f = fingerprint("s3cr3t-token");
        assert_eq!(f.len(), 16);
        assert!(f.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!f.contains("s3cr3t"));
        assert_ne!(f, fingerprint("s3cr3t-token2"));
    }

    proptest! {
        #[test]
        fn decoding_anything_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn any_record_round_trips(
            outcome in 0u8..3,
            status in proptest::option::of(any::<i64>()),
            codes in proptest::collection::vec(".{0,30}", 0..4),
        ) {
            let outcome = [Outcome::Ok, Outcome::Rejected, Outcome::Failed][usize::from(outcome)];
            let r = Recorded { outcome, status_code: status, message_codes: codes };
            prop_assert_eq!(decode(&encode_record(&r)), Held::Record(r));
        }
    }
}
