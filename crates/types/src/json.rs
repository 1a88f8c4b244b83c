//! [`Json`]: a JSON document as it was received, with the few facts the gateway acts on.
//!
//! Same-dialect traffic does not need the whole answer as Rust values: the gateway forwards
//! the provider's bytes and only needs to know the usage, whether a choice finished, and
//! whether the document is an error. Parsing those facts skips everything else without
//! allocating for it, and forwarding the original bytes costs no serialisation; the typed
//! value is parsed on demand (for translation between dialects).

use std::{borrow::Cow, fmt, marker::PhantomData};

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned, de::IgnoredAny};

use crate::{anthropic, llm::Usage, openai};

/// A JSON document of type `T`, kept as its bytes.
pub struct Json<T> {
    raw: Bytes,
    facts: Facts,
    kind: PhantomData<fn() -> T>,
}

/// What the gateway reads from a response document without parsing all of it, the same for
/// every dialect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// The usage the document reports, normalised; `None` when it reports none.
    pub usage: Option<Usage>,
    /// Whether the document ends the answer: a choice's `finish_reason` (OpenAI), a
    /// `stop_reason` or `message_stop` (Anthropic).
    pub finished: bool,
    /// Whether it is a stream's usage report alone (OpenAI's last chunk when
    /// `stream_options.include_usage` was asked for: a `usage` and no choices).
    pub usage_only: bool,
    /// Whether it is an error (an `error` member, or an Anthropic `error` event).
    pub error: bool,
}

/// A document type whose [`Facts`] can be read from its bytes.
pub trait Document {
    /// Reads the facts, skipping everything else; fails when `raw` is not a JSON object.
    fn read_facts(raw: &[u8]) -> serde_json::Result<Facts>;
}

/// The facts of an OpenAI completion, chunk or embeddings answer.
#[derive(Deserialize)]
struct OpenAiFacts {
    #[serde(default)]
    usage: Option<OpenAiUsage>,
    #[serde(default)]
    choices: Option<Vec<ChoiceFacts>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoiceFacts {
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

/// OpenAI's usage, with the details that are priced apart. `cache_creation_input_tokens` is
/// not OpenAI's: adapters translating from a provider that reports cache writes (Anthropic,
/// Bedrock) put it there, as LiteLLM does.
#[derive(Deserialize)]
struct OpenAiUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<Details>,
    #[serde(default)]
    completion_tokens_details: Option<Details>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    cached_tokens: Option<u64>,
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<OpenAiUsage> for Usage {
    fn from(u: OpenAiUsage) -> Self {
        Usage {
            input: u.prompt_tokens.unwrap_or(0),
            output: u.completion_tokens.unwrap_or(0),
            cached_input: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
            cache_creation: u.cache_creation_input_tokens.unwrap_or(0),
            reasoning: u.completion_tokens_details.and_then(|d| d.reasoning_tokens).unwrap_or(0),
        }
    }
}

fn openai_facts(raw: &[u8]) -> serde_json::Result<Facts> {
    let facts: OpenAiFacts = serde_json::from_slice(raw)?;
    let choices = facts.choices.as_deref().unwrap_or_default();
    Ok(Facts {
        usage_only: facts.usage.is_some() && choices.is_empty(),
        usage: facts.usage.map(Usage::from),
        finished: choices.iter().any(|c| c.finish_reason.is_some()),
        error: facts.error.is_some(),
    })
}

impl Document for openai::ChatCompletion {
    fn read_facts(raw: &[u8]) -> serde_json::Result<Facts> {
        openai_facts(raw)
    }
}

impl Document for openai::ChatCompletionChunk {
    fn read_facts(raw: &[u8]) -> serde_json::Result<Facts> {
        openai_facts(raw)
    }
}

impl Document for openai::EmbeddingsResponse {
    fn read_facts(raw: &[u8]) -> serde_json::Result<Facts> {
        openai_facts(raw)
    }
}

/// Anthropic's usage. Its `input_tokens` leaves out the cache's tokens; normalised, `input`
/// counts them all.
#[derive(Deserialize)]
struct AnthropicUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl From<AnthropicUsage> for Usage {
    fn from(u: AnthropicUsage) -> Self {
        let cached = u.cache_read_input_tokens.unwrap_or(0);
        let creation = u.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            input: u.input_tokens.unwrap_or(0) + cached + creation,
            output: u.output_tokens.unwrap_or(0),
            cached_input: cached,
            cache_creation: creation,
            reasoning: 0,
        }
    }
}

/// The facts of an Anthropic message or stream event.
#[derive(Deserialize)]
struct AnthropicFacts<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
    /// `message_start` carries the message, and its usage.
    #[serde(default)]
    message: Option<MessageFacts>,
    #[serde(default)]
    stop_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct MessageFacts {
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

impl Document for anthropic::Message {
    fn read_facts(raw: &[u8]) -> serde_json::Result<Facts> {
        let facts: AnthropicFacts<'_> = serde_json::from_slice(raw)?;
        Ok(Facts {
            usage: facts.usage.map(Usage::from),
            finished: facts.stop_reason.is_some(),
            usage_only: false,
            error: facts.kind.as_deref() == Some("error"),
        })
    }
}

impl Document for anthropic::StreamEvent {
    fn read_facts(raw: &[u8]) -> serde_json::Result<Facts> {
        let facts: AnthropicFacts<'_> = serde_json::from_slice(raw)?;
        let usage = facts.usage.or_else(|| facts.message.and_then(|m| m.usage));
        Ok(Facts {
            usage: usage.map(Usage::from),
            finished: facts.kind.as_deref() == Some("message_stop"),
            usage_only: false,
            error: facts.kind.as_deref() == Some("error"),
        })
    }
}

impl<T: Document> Json<T> {
    /// Checks that `raw` is a JSON object and reads its facts.
    pub fn from_bytes(raw: Bytes) -> Result<Self, serde_json::Error> {
        let facts = T::read_facts(&raw)?;
        Ok(Self { raw, facts, kind: PhantomData })
    }
}

impl<T> Json<T> {
    /// The document's bytes, as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The document's bytes, as received.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    /// The usage the document reports, normalised, when it reports one.
    pub fn usage(&self) -> Option<Usage> {
        self.facts.usage
    }

    /// Whether the document ends the answer (see [`Facts::finished`]).
    pub fn has_finish_reason(&self) -> bool {
        self.facts.finished
    }

    /// Whether the document is a stream's usage report alone: a `usage` and no choices (the
    /// last chunk of a stream asked for with `stream_options.include_usage`).
    pub fn is_usage_only(&self) -> bool {
        self.facts.usage_only
    }

    /// Whether the document is an error (a provider's error event).
    pub fn is_error(&self) -> bool {
        self.facts.error
    }
}

impl<T: Serialize + Document> Json<T> {
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
        Self { raw: self.raw.clone(), facts: self.facts, kind: PhantomData }
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
        assert_eq!(doc.usage().map(|u| (u.input, u.output, u.cached_input)), Some((3, 1, 2)));
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

    #[test]
    fn anthropic_usage_counts_the_cache_in_the_input() {
        let raw = br#"{"id":"msg_1","type":"message","content":[],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":7,"cache_read_input_tokens":100,"cache_creation_input_tokens":20}}"#;
        let doc = Json::<anthropic::Message>::from_bytes(Bytes::from_static(raw)).expect("valid");
        let usage = doc.usage().expect("usage");
        assert_eq!((usage.input, usage.output, usage.cached_input, usage.cache_creation), (125, 7, 100, 20));
        assert!(doc.has_finish_reason());
    }

    #[test]
    fn anthropic_events_report_usage_at_start_and_end_and_finish_at_message_stop() {
        let event = |raw: &'static [u8]| {
            Json::<anthropic::StreamEvent>::from_bytes(Bytes::from_static(raw)).expect("valid")
        };
        let start = event(
            br#"{"type":"message_start","message":{"id":"m","content":[],"stop_reason":null,"usage":{"input_tokens":9,"output_tokens":1}}}"#,
        );
        assert_eq!(start.usage().map(|u| (u.input, u.output)), Some((9, 1)));
        assert!(!start.has_finish_reason());
        let delta = event(
            br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#,
        );
        let mut total = start.usage().unwrap_or_default();
        total.merge(&delta.usage().unwrap_or_default());
        assert_eq!((total.input, total.output), (9, 15));
        assert!(event(br#"{"type":"message_stop"}"#).has_finish_reason());
        assert!(event(br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#).is_error());
    }
}
