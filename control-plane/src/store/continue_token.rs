//! List continue tokens: the revision a paginated list reads at and the key it resumes from.
//!
//! The token is opaque to clients (`v1.<revision>.<hex of the start key>`), like Kubernetes'
//! base64 JSON tokens, and is checked against the prefix being listed.

use super::{Revision, StoreError};

/// A decoded continue token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContinueToken {
    /// The revision every page of the list is read at.
    pub revision: Revision,
    /// The first key of the next page (inclusive).
    pub start: String,
}

impl ContinueToken {
    /// The token for the page after `last_key`, read at `revision`.
    pub fn after(revision: Revision, last_key: &str) -> Self {
        // The smallest key greater than `last_key`.
        let mut start = last_key.to_owned();
        start.push('\0');
        ContinueToken { revision, start }
    }

    /// The token as a string.
    pub fn encode(&self) -> String {
        let mut out = format!("v1.{}.", self.revision);
        for byte in self.start.as_bytes() {
            out.push_str(&format!("{byte:02x}"));
        }
        out
    }

    /// Parses a token and checks that it belongs to a list of `prefix`.
    pub fn decode(token: &str, prefix: &str) -> Result<Self, StoreError> {
        let invalid = |reason| StoreError::InvalidContinue {
            token: token.to_owned(),
            reason,
        };
        let rest = token
            .strip_prefix("v1.")
            .ok_or_else(|| invalid("unknown version"))?;
        let (revision, hex) = rest
            .split_once('.')
            .ok_or_else(|| invalid("missing start key"))?;
        let revision: Revision = revision.parse().map_err(|_| invalid("bad revision"))?;
        if hex.len() % 2 != 0 {
            return Err(invalid("bad start key"));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid("bad start key"))?;
        let start = String::from_utf8(bytes).map_err(|_| invalid("bad start key"))?;
        if !start.starts_with(prefix) {
            return Err(invalid("it was issued for another prefix"));
        }
        Ok(ContinueToken { revision, start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks_prefix() {
        let token = ContinueToken::after(42, "/registry/core/pods/default/a");
        let text = token.encode();
        assert_eq!(
            ContinueToken::decode(&text, "/registry/core/pods/").unwrap(),
            token
        );
        assert!(ContinueToken::decode(&text, "/registry/core/nodes/").is_err());
        assert!(ContinueToken::decode("garbage", "/").is_err());
        assert!(ContinueToken::decode("v1.x.00", "/").is_err());
    }
}
