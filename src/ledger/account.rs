//! A Pushwoosh account as the shared rate limiter names it: applications called with one
//! token share one budget. The token never reaches Redis, only its fingerprint.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::encoding::fingerprint;

/// Cheap to clone; prints as its name (a fingerprint or a configured name), never a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account(Arc<str>);

impl Account {
    /// The account of a token: 16 hex characters of its SHA-256.
    pub fn of_token(token: &SecretString) -> Self {
        Self(fingerprint(token.expose_secret()).into())
    }

    /// An account by name (`[a-zA-Z0-9_.-]`, anything else is replaced by `_`), for
    /// applications whose tokens share one budget.
    pub fn named(name: &str) -> Self {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Self(name.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_a_fingerprint_or_a_tame_name() {
        let a = Account::of_token(&SecretString::from("tok-1"));
        assert_eq!(a.as_str().len(), 16);
        assert_eq!(a, Account::of_token(&SecretString::from("tok-1")));
        assert_ne!(a, Account::of_token(&SecretString::from("tok-2")));
        assert!(!format!("{a:?}").contains("tok-1"));
        assert_eq!(Account::named("acme {eu}:1").as_str(), "acme__eu__1");
    }
}
