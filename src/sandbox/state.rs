//! In-memory state of the sandbox: per-method request counters, the messages it created
//! (for cancel/delete/details/history), and the transactionId de-duplication store.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::codes::CodeGen;
use super::methods::Method;

/// Messages kept for lookups; the oldest are forgotten beyond this.
const MAX_MESSAGES: usize = 100_000;
/// Expired de-duplication entries are swept after this many creations.
const PRUNE_EVERY: u32 = 1024;
/// First numeric message id handed out (Pushwoosh's ids are large integers).
const FIRST_ID: u64 = 10_191_600_000;

/// Requests seen per method, whatever their outcome.
pub(super) struct Counters {
    requests: [AtomicU64; Method::ALL.len()],
}

impl Counters {
    pub(super) fn new() -> Self {
        Self {
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub(super) fn count(&self, method: Method) {
        self.requests[method.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn get(&self, name: &str) -> u64 {
        Method::parse(name).map_or(0, |m| self.requests[m.index()].load(Ordering::Relaxed))
    }
}

/// Which create method made a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Push,
    Sms,
    WhatsApp,
    Targeted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Done,
    Cancelled,
}

/// One message created by the sandbox, with the parameters it was created from (never `auth`).
#[derive(Clone, Debug)]
pub(super) struct Message {
    pub(super) id: u64,
    pub(super) code: String,
    pub(super) kind: Kind,
    pub(super) application: String,
    pub(super) created: DateTime<Utc>,
    pub(super) send_date: String,
    pub(super) status: Status,
    pub(super) params: Map<String, Value>,
}

/// What a create call gives to the store.
pub(super) struct NewMessage<'a> {
    pub(super) kind: Kind,
    pub(super) application: &'a str,
    pub(super) transaction_id: Option<&'a str>,
    pub(super) params: Map<String, Value>,
}

struct Inner {
    by_id: BTreeMap<u64, Message>,
    by_code: HashMap<String, u64>,
    dedup: HashMap<(String, String), (String, Instant)>,
    next_id: u64,
    since_prune: u32,
}

/// Created messages and the de-duplication window, behind one lock (never held across an await).
pub(super) struct Store {
    inner: Mutex<Inner>,
    codes: CodeGen,
    dedup_window: Duration,
    sends: AtomicU64,
}

impl Store {
    pub(super) fn new(dedup_window: Duration, seed: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                by_id: BTreeMap::new(),
                by_code: HashMap::new(),
                dedup: HashMap::new(),
                next_id: FIRST_ID,
                since_prune: 0,
            }),
            codes: CodeGen::new(seed),
            dedup_window,
            sends: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Distinct messages created so far (de-duplicated repeats excluded).
    pub(super) fn sends(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }

    /// Creates a message, or returns the code already given to the same
    /// (application, transactionId) within the window. The bool is true for a new message.
    pub(super) fn create(&self, new: NewMessage<'_>) -> (String, bool) {
        let now = Instant::now();
        let mut inner = self.lock();
        let key = new
            .transaction_id
            .map(|t| (new.application.to_owned(), t.to_owned()));
        if let Some(key) = &key
            && let Some((code, at)) = inner.dedup.get(key)
            && now.duration_since(*at) < self.dedup_window
        {
            return (code.clone(), false);
        }
        let code = self.codes.next_code();
        let id = inner.next_id;
        inner.next_id += 1;
        let created = Utc::now();
        let send_date = send_date_of(&new.params, created);
        let message = Message {
            id,
            code: code.clone(),
            kind: new.kind,
            application: new.application.to_owned(),
            created,
            send_date,
            status: Status::Done,
            params: new.params,
        };
        inner.by_code.insert(code.clone(), id);
        inner.by_id.insert(id, message);
        while inner.by_id.len() > MAX_MESSAGES {
            if let Some((_, old)) = inner.by_id.pop_first() {
                inner.by_code.remove(&old.code);
            }
        }
        if let Some(key) = key
            && !self.dedup_window.is_zero()
        {
            inner.dedup.insert(key, (code.clone(), now));
        }
        inner.since_prune += 1;
        if inner.since_prune >= PRUNE_EVERY {
            inner.since_prune = 0;
            let window = self.dedup_window;
            inner
                .dedup
                .retain(|_, (_, at)| now.duration_since(*at) < window);
        }
        self.sends.fetch_add(1, Ordering::Relaxed);
        (code, true)
    }

    /// Looks a message up by code, or by numeric id written as a string.
    fn id_of(inner: &Inner, key: &str) -> Option<u64> {
        inner.by_code.get(key).copied().or_else(|| {
            key.parse::<u64>()
                .ok()
                .filter(|id| inner.by_id.contains_key(id))
        })
    }

    pub(super) fn get(&self, key: &str) -> Option<Message> {
        let inner = self.lock();
        Self::id_of(&inner, key).and_then(|id| inner.by_id.get(&id).cloned())
    }

    /// Marks a known message cancelled; false when unknown.
    pub(super) fn cancel(&self, key: &str) -> bool {
        let mut inner = self.lock();
        let Some(id) = Self::id_of(&inner, key) else {
            return false;
        };
        if let Some(m) = inner.by_id.get_mut(&id) {
            m.status = Status::Cancelled;
        }
        true
    }

    /// Forgets a known message; false when unknown.
    pub(super) fn delete(&self, key: &str) -> bool {
        let mut inner = self.lock();
        let Some(id) = Self::id_of(&inner, key) else {
            return false;
        };
        if let Some(m) = inner.by_id.remove(&id) {
            inner.by_code.remove(&m.code);
        }
        true
    }

    /// Newest first, ids below `before` only (when given), at most `limit`, kept by `keep`.
    pub(super) fn history(
        &self,
        before: Option<u64>,
        limit: usize,
        keep: impl Fn(&Message) -> bool,
    ) -> Vec<Message> {
        let inner = self.lock();
        let upper = before.unwrap_or(u64::MAX);
        inner
            .by_id
            .range(..upper)
            .rev()
            .map(|(_, m)| m)
            .filter(|m| keep(m))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// The notification's `send_date` when it is `YYYY-MM-DD HH:mm`, else the creation time.
fn send_date_of(params: &Map<String, Value>, created: DateTime<Utc>) -> String {
    params
        .get("send_date")
        .and_then(Value::as_str)
        .and_then(|s| chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M").ok())
        .map_or_else(
            || created.format("%Y-%m-%d %H:%M:%S").to_string(),
            |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(app: &'a str, tid: Option<&'a str>) -> NewMessage<'a> {
        let mut params = Map::new();
        params.insert("send_date".into(), Value::from("2030-01-02 03:04"));
        NewMessage {
            kind: Kind::Push,
            application: app,
            transaction_id: tid,
            params,
        }
    }

    #[test]
    fn dedup_is_per_application_and_transaction() {
        let s = Store::new(Duration::from_secs(60), 1);
        let (a, new_a) = s.create(msg("APP-1", Some("t1")));
        let (b, new_b) = s.create(msg("APP-1", Some("t1")));
        let (c, _) = s.create(msg("APP-2", Some("t1")));
        let (d, _) = s.create(msg("APP-1", None));
        let (e, _) = s.create(msg("APP-1", None));
        assert!(new_a && !new_b);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(d, e);
        assert_eq!(s.sends(), 4);
        assert_eq!(
            s.get(&a).map(|m| m.send_date),
            Some("2030-01-02 03:04:00".into())
        );
    }

    #[test]
    fn zero_window_never_dedups_and_lookups_work_by_id() {
        let s = Store::new(Duration::ZERO, 2);
        let (a, _) = s.create(msg("APP", Some("t")));
        let (b, _) = s.create(msg("APP", Some("t")));
        assert_ne!(a, b);
        let id = s.get(&a).map(|m| m.id).unwrap_or_default();
        assert!(s.get(&id.to_string()).is_some());
        assert!(s.cancel(&a));
        assert_eq!(s.get(&a).map(|m| m.status), Some(Status::Cancelled));
        assert!(s.delete(&a) && !s.delete(&a) && !s.cancel(&a));
        assert_eq!(s.history(None, 10, |_| true).len(), 1);
    }
}
