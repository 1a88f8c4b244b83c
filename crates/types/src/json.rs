//! [`Json`]: a JSON document as it was received, with the few facts the gateway acts on.
//!
//! Same-dialect traffic does not need the whole answer as Rust values: the gateway forwards
//! the provider's bytes and only needs to know the usage, whether a choice finished, and
//! whether the document is an error. Parsing those facts skips everything else without
//! allocating for it, and forwarding the original bytes costs no serialisation; the typed
//! value is parsed on demand (for translation between dialects).

use std::{fmt, marker::PhantomData};

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned, de::IgnoredAny};

use crate::openai::Usage;

/// A JSON document of type `T`, kept as its bytes.
pub struct Json<T> {
    raw: Bytes,
    facts: Facts,
    kind: PhantomData<fn() -> T>,
}

/// What the gateway reads from a response document without parsing all of it.
#[derive(Debug, Clone, Default, Deserialize)]
struct Facts {
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    choices: Option<Vec<ChoiceFacts>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ChoiceFacts {
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

impl<T> Json<T> {
    /// Checks that `raw` is a JSON object and reads its facts.
    pub fn from_bytes(raw: Bytes) -> Result<Self, serde_json::Error> {
        let facts: Facts = serde_json::from_slice(&raw)?;
        Ok(Self { raw, facts, kind: PhantomData })
    }

    /// The document's bytes, as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The document's bytes, as received.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// The `usage` object, when the document has one that is not null.
    pub fn usage(&self) -> Option<&Usage> {
        self.facts.usage.as_ref()
    }

    /// Whether any choice carries a non-null `finish_reason`.
    pub fn has_finish_reason(&self) -> bool {
        self.facts.choices.as_ref().is_some_and(|c| c.iter().any(|c| c.finish_reason.is_some()))
    }

    /// Whether the document is a stream's usage report alone: a `usage` and no choices (the
    /// last chunk of a stream asked for with `stream_options.include_usage`).
    pub fn is_usage_only(&self) -> bool {
        self.facts.usage.is_some() && self.facts.choices.as_ref().is_none_or(Vec::is_empty)
    }

    /// Whether the document has an `error` member (a provider's error event).
    pub fn is_error(&self) -> bool {
        self.facts.error.is_some()
    }
}

impl<T: Serialize> Json<T> {
    /// Serialises a typed value.
    pub fn from_typed(value: &T) -> Result<Self, serde_json::Error> {
        Self::from_bytes(Bytes::from(serde_json::to_vec(value)?))
    }
}

impl<T: DeserializeOwned> Json<T> {
    /// Parses the whole document as `T`.
    pub fn parse(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.raw)
    }
}

impl<T> Clone for Json<T> {
    fn clone(&self) -> Self {
        Self { raw: self.raw.clone(), facts: self.facts.clone(), kind: PhantomData }
    }
}

impl<T> fmt::Debug for Json<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Json").field(&String::from_utf8_lossy(&self.raw)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{ChatCompletion, ChatCompletionChunk};

    #[test]
    fn reads_usage_and_finish_reason_and_keeps_the_bytes() {
        let raw = br#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":2}},"vendor":{"a":1}}"#;
        let doc = Json::<ChatCompletion>::from_bytes(Bytes::from_static(raw)).expect("valid");
        assert_eq!(doc.usage().map(|u| u.total_tokens), Some(4));
        assert_eq!(
            doc.usage().map(|u| u.extra["prompt_tokens_details"]["cached_tokens"].clone()),
            Some(2.into())
        );
        assert!(doc.has_finish_reason());
        assert!(!doc.is_usage_only());
        assert!(!doc.is_error());
        assert_eq!(&doc.raw()[..], &raw[..], "forwarded byte for byte");
        assert_eq!(doc.parse().expect("typed").extra["vendor"]["a"], 1);
    }

    #[test]
    fn null_usage_and_null_finish_reason_are_absent() {
        let raw = br#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}],"usage":null}"#;
        let doc = Json::<ChatCompletionChunk>::from_bytes(Bytes::from_static(raw)).expect("valid");
        assert!(doc.usage().is_none());
        assert!(!doc.has_finish_reason());
        assert!(!doc.is_usage_only());
        let last = br#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        let doc = Json::<ChatCompletionChunk>::from_bytes(Bytes::from_static(last)).expect("valid");
        assert!(doc.is_usage_only());
    }

    #[test]
    fn errors_and_invalid_json_are_told_apart() {
        let error =
            Json::<ChatCompletionChunk>::from_bytes(Bytes::from_static(br#"{"error":{"message":"x"}}"#));
        assert!(error.expect("valid JSON").is_error());
        assert!(Json::<ChatCompletionChunk>::from_bytes(Bytes::from_static(b"{not json")).is_err());
        assert!(
            Json::<ChatCompletionChunk>::from_bytes(Bytes::from_static(b"[1,2]")).is_err(),
            "an object is required"
        );
    }
}
