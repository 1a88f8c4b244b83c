//! The parts of a Messages request the mock reads; its validation, worded as the API words its
//! `invalid_request_error`s; and what the mock derives from it: the input-token estimate, the
//! prompt-cache breakpoints, and the answer to give.
//!
//! Requests are parsed into borrowed views holding only what the mock needs (serde skips every
//! other field), as the OpenAI dialect does, to keep the mock cheap under a benchmark.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{THINKING_PIECES, TOOL_INPUT_FRAGMENTS};
use crate::prompt_cache::PromptCache;
use crate::synth;

/// The smallest `thinking.budget_tokens` the API accepts.
const MIN_THINKING_BUDGET: u64 = 1024;

/// A `POST /v1/messages` (or `count_tokens`) body, as far as the mock reads it.
#[derive(Debug, Deserialize)]
pub(super) struct MessagesView<'a> {
    #[serde(default, borrow)]
    pub(super) model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(super) max_tokens: Option<u64>,
    #[serde(default, borrow)]
    pub(super) messages: Option<Vec<MessageView<'a>>>,
    #[serde(default, borrow)]
    pub(super) system: Option<Content<'a>>,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(default, borrow)]
    pub(super) tools: Option<Vec<ToolView<'a>>>,
    #[serde(default, borrow)]
    pub(super) tool_choice: Option<ToolChoiceView<'a>>,
    #[serde(default, borrow)]
    pub(super) thinking: Option<ThinkingView<'a>>,
    #[serde(default, borrow)]
    pub(super) stop_sequences: Option<Vec<Cow<'a, str>>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct MessageView<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow)]
    content: Content<'a>,
}

/// A message's `content` or the `system` prompt: a string, or an array of content blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or an array of content blocks")]
pub(super) enum Content<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Blocks(#[serde(borrow)] Vec<Block<'a>>),
}

/// One content block: `text`, `image`, `tool_use`, `tool_result` (whose `content` nests),
/// `thinking`, `document`...
#[derive(Debug, Deserialize)]
pub(super) struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    content: Option<Content<'a>>,
    #[serde(default)]
    cache_control: Option<IgnoredAny>,
}

/// A tool definition: a client tool (`name`, `description`, `input_schema`) or a server tool
/// (`type`, `name`).
#[derive(Debug, Deserialize)]
pub(super) struct ToolView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    description: Option<Cow<'a, str>>,
    #[serde(default)]
    cache_control: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ToolChoiceView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ThinkingView<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    budget_tokens: Option<u64>,
}

/// What the mock reads in a prompt: its size, and where it asks for caching.
#[derive(Debug)]
pub(super) struct Prompt {
    /// Characters of text: tool names and descriptions, the system prompt, and the text of every
    /// message (string contents, `text` blocks, and the content of `tool_result` blocks).
    chars: usize,
    /// Every block marked with `cache_control`, in prompt order (tools, then system, then
    /// messages): the characters up to and including it, and a hash of that prefix.
    breakpoints: Vec<(usize, u64)>,
}

/// The input side of a usage, split as Anthropic splits it: `input_tokens` are the tokens after
/// the last cache breakpoint, and the three add up to the whole prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InputUsage {
    pub(super) input_tokens: u64,
    pub(super) cache_creation_input_tokens: u64,
    pub(super) cache_read_input_tokens: u64,
}

/// What a request is answered with.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// A `thinking` block comes first.
    pub(super) thinking: bool,
    pub(super) answer: Answer,
}

/// The block after the thinking, if any.
#[derive(Debug, Clone)]
pub(super) enum Answer {
    Text {
        /// The whole text: `tok0 tok1 ...`, cut at a stop sequence.
        text: String,
        stop_reason: &'static str,
        stop_sequence: Option<String>,
    },
    ToolUse {
        name: String,
    },
}

/// Walks a prompt in order, counting characters and hashing the prefix so far.
struct Walk {
    chars: usize,
    hash: u64,
    breakpoints: Vec<(usize, u64)>,
}

/// Checks what the API checks before answering, in the API's words. `count_tokens` takes no
/// `max_tokens`, so `needs_max_tokens` is false for it.
pub(super) fn validate(request: &MessagesView<'_>, needs_max_tokens: bool) -> Result<(), String> {
    if request.model.is_none() {
        return Err("model: Field required".into());
    }
    if needs_max_tokens {
        match request.max_tokens {
            None => return Err("max_tokens: Field required".into()),
            Some(0) => return Err("max_tokens: Input should be greater than or equal to 1".into()),
            Some(_) => {}
        }
    }
    let Some(messages) = &request.messages else {
        return Err("messages: Field required".into());
    };
    let Some(first) = messages.first() else {
        return Err("messages: at least one message is required".into());
    };
    if let Some(at) = messages.iter().position(|m| m.role != "user" && m.role != "assistant") {
        return Err(format!("messages.{at}.role: Input should be 'user' or 'assistant'"));
    }
    // Anthropic's own endpoint has come to accept an assistant turn first; Bedrock and Vertex
    // still refuse it, and so does the mock, so that a translation producing one is caught.
    if first.role != "user" {
        return Err("messages: first message must use the \"user\" role".into());
    }
    if let Some(thinking) = &request.thinking
        && thinking.kind == "enabled"
    {
        match thinking.budget_tokens {
            None => return Err("thinking.enabled.budget_tokens: Field required".into()),
            Some(budget) if budget < MIN_THINKING_BUDGET => {
                return Err(format!(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to \
                     {MIN_THINKING_BUDGET}"
                ));
            }
            Some(budget) if needs_max_tokens && request.max_tokens.is_some_and(|max| max <= budget) => {
                return Err("`max_tokens` must be greater than `thinking.budget_tokens`.".into());
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Decides the answer: thinking first when asked for; then a call of the tool `tool_choice`
/// names (or of the first tool) when tools are given, `tool_choice` is not `none` and the last
/// message does not end with a `tool_result`; else `chunks` text tokens, fewer when
/// `max_tokens` (which thinking counts against) or a stop sequence cuts them short.
pub(super) fn plan(request: &MessagesView<'_>, chunks: usize) -> Plan {
    let thinking = request.thinking.as_ref().is_some_and(|t| t.kind == "enabled" || t.kind == "adaptive");
    let choice = request.tool_choice.as_ref();
    let after_tool_result = request.messages.as_ref().and_then(|m| m.last()).is_some_and(|m| {
        matches!(&m.content, Content::Blocks(blocks) if blocks.last().is_some_and(|b| b.kind == "tool_result"))
    });
    let first_tool = request.tools.iter().flatten().next();
    let named = choice.filter(|c| c.kind == "tool").and_then(|c| c.name.as_deref());
    if let Some(tool) = first_tool
        && !after_tool_result
        && choice.is_none_or(|c| c.kind != "none")
    {
        let name = named.unwrap_or(&tool.name).to_owned();
        return Plan { thinking, answer: Answer::ToolUse { name } };
    }

    let thinking_tokens = if thinking { THINKING_PIECES.len() } else { 0 };
    let cap = request
        .max_tokens
        .and_then(|max| usize::try_from(max).ok())
        .map_or(usize::MAX, |max| max.saturating_sub(thinking_tokens));
    let tokens = chunks.min(cap);
    let mut text = synth::text(tokens);
    // The earliest match of any sequence ends the text, which does not include the sequence.
    let stop = request
        .stop_sequences
        .iter()
        .flatten()
        .filter(|sequence| !sequence.is_empty())
        .filter_map(|sequence| text.find(sequence.as_ref()).map(|at| (at, sequence)))
        .min_by_key(|(at, _)| *at);
    let (stop_reason, stop_sequence) = match stop {
        Some((at, sequence)) => {
            let sequence = sequence.clone().into_owned();
            text.truncate(at);
            ("stop_sequence", Some(sequence))
        }
        None if tokens < chunks => ("max_tokens", None),
        None => ("end_turn", None),
    };
    Plan { thinking, answer: Answer::Text { text, stop_reason, stop_sequence } }
}

// === impl Prompt ===

impl Prompt {
    /// Reads the prompt of `request`.
    pub(super) fn of(request: &MessagesView<'_>) -> Self {
        // Caches are per model: the same prefix for another model is another entry.
        let mut walk = Walk { chars: 0, hash: FNV_OFFSET, breakpoints: Vec::new() };
        walk.hash(request.model.as_deref().unwrap_or_default().as_bytes());
        for tool in request.tools.iter().flatten() {
            walk.text(&tool.name);
            if let Some(description) = &tool.description {
                walk.text(description);
            }
            walk.end_block(tool.cache_control.is_some());
        }
        walk.hash(b"\x00system");
        if let Some(system) = &request.system {
            walk.content(system);
        }
        for message in request.messages.iter().flatten() {
            walk.hash(b"\x00");
            walk.hash(message.role.as_bytes());
            walk.content(&message.content);
        }
        Prompt { chars: walk.chars, breakpoints: walk.breakpoints }
    }

    /// The input tokens of the whole prompt: what `count_tokens` answers, and the sum of the
    /// three parts of [`InputUsage`].
    pub(super) fn tokens(&self) -> u64 {
        synth::prompt_tokens(self.chars)
    }

    /// Splits the prompt's tokens as Anthropic does when the prompt asks for caching, and
    /// remembers its prefixes in `cache`.
    ///
    /// The rule: the cached prefix ends at the last block marked with `cache_control`, and is
    /// worth its characters / 4 tokens (at most all tokens but one). If the longest prefix
    /// ending at one of the request's breakpoints was seen before (by this server, for this
    /// model, with the same text and block types), its tokens are `cache_read_input_tokens`;
    /// the rest of the cached prefix is `cache_creation_input_tokens`; what follows the last
    /// breakpoint is `input_tokens`. So a first request writes its whole prefix, and the same
    /// prefix again reads it all. Unlike Anthropic, the mock caches prefixes of any length
    /// (Anthropic ignores those under 1024 tokens), so that small test prompts can be cached.
    pub(super) fn usage(&self, cache: &PromptCache) -> InputUsage {
        let total = self.tokens();
        let Some(&(last_chars, _)) = self.breakpoints.last() else {
            return InputUsage {
                input_tokens: total,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: 0,
            };
        };
        let hashes: Vec<u64> = self.breakpoints.iter().map(|(_, hash)| *hash).collect();
        let prefix_tokens = |chars: usize| ((chars / 4) as u64).min(total - 1);
        let cached = prefix_tokens(last_chars);
        let read = cache.longest_seen(&hashes).map_or(0, |at| prefix_tokens(self.breakpoints[at].0));
        InputUsage {
            input_tokens: total - cached,
            cache_creation_input_tokens: cached - read,
            cache_read_input_tokens: read,
        }
    }

    /// Whether any block asked for caching.
    #[cfg(test)]
    pub(super) fn caches(&self) -> bool {
        !self.breakpoints.is_empty()
    }
}

// === impl InputUsage ===

impl InputUsage {
    /// Every input token, cached or not: what the gateway calls the prompt tokens.
    pub(super) fn total(&self) -> u64 {
        self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens
    }
}

// === impl Plan ===

impl Plan {
    /// The output tokens of the answer: one per thinking piece, per text piece (`tok{i} `) and
    /// per fragment of the tool input.
    pub(super) fn output_tokens(&self) -> u64 {
        let thinking = if self.thinking { THINKING_PIECES.len() } else { 0 };
        let answer = match &self.answer {
            Answer::Text { text, .. } => text.split_inclusive(' ').count(),
            Answer::ToolUse { .. } => TOOL_INPUT_FRAGMENTS.len(),
        };
        (thinking + answer) as u64
    }
}

// === impl Walk ===

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

impl Walk {
    fn content(&mut self, content: &Content<'_>) {
        match content {
            Content::Text(text) => {
                self.text(text);
                self.end_block(false);
            }
            Content::Blocks(blocks) => {
                for block in blocks {
                    self.hash(block.kind.as_bytes());
                    if let Some(text) = &block.text {
                        self.text(text);
                    }
                    if let Some(content) = &block.content {
                        self.content(content);
                    }
                    self.end_block(block.cache_control.is_some());
                }
            }
        }
    }

    fn text(&mut self, text: &str) {
        self.chars += text.chars().count();
        self.hash(text.as_bytes());
    }

    /// Ends a block (so that "ab" + "c" and "a" + "bc" differ), and marks a breakpoint there
    /// when the block carries `cache_control`.
    fn end_block(&mut self, breakpoint: bool) {
        self.hash(&[0xff]);
        if breakpoint {
            self.breakpoints.push((self.chars, self.hash));
        }
    }

    /// FNV-1a, continued over `bytes`.
    fn hash(&mut self, bytes: &[u8]) {
        self.hash = bytes.iter().fold(self.hash, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(FNV_PRIME));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    fn view(json: &str) -> MessagesView<'_> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn counts_text_in_every_place_a_prompt_holds_it() {
        let request = view(
            r#"{"model":"m","system":[{"type":"text","text":"abcd"}],
                "tools":[{"name":"get","description":"wxyz","input_schema":{}}],
                "messages":[{"role":"user","content":"héllo"},
                            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"get","input":{"q":"ignored"}}]},
                            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"12"}]},
                                                      {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}]}"#,
        );
        let prompt = Prompt::of(&request);
        // get + wxyz + abcd + héllo + 12
        assert_eq!(prompt.chars, 3 + 4 + 4 + 5 + 2);
        assert_eq!(prompt.tokens(), 18 / 4 + 1);
        assert!(!prompt.caches());
    }

    #[test]
    fn the_first_request_writes_the_prefix_and_the_next_reads_it() {
        let cache = PromptCache::default();
        let long = "x".repeat(400);
        let body = format!(
            r#"{{"model":"m","system":[{{"type":"text","text":"{long}","cache_control":{{"type":"ephemeral"}}}}],
                "messages":[{{"role":"user","content":"{}"}}]}}"#,
            "y".repeat(40)
        );
        let prompt = Prompt::of(&view(&body));
        assert_eq!(prompt.tokens(), 440 / 4 + 1);
        let first = prompt.usage(&cache);
        assert_eq!(
            first,
            InputUsage {
                input_tokens: 111 - 100,
                cache_creation_input_tokens: 100,
                cache_read_input_tokens: 0
            }
        );
        let second = prompt.usage(&cache);
        assert_eq!(
            second,
            InputUsage { input_tokens: 11, cache_creation_input_tokens: 0, cache_read_input_tokens: 100 }
        );
        assert_eq!(first.total(), prompt.tokens());

        // Another model, or another prefix, writes again.
        let other = Prompt::of(&view(&body.replacen(r#""model":"m""#, r#""model":"n""#, 1)));
        assert_eq!(other.usage(&cache).cache_read_input_tokens, 0);
    }

    #[test]
    fn a_longer_prefix_reads_the_known_part_and_writes_the_rest() {
        let cache = PromptCache::default();
        let system = format!(
            r#"[{{"type":"text","text":"{}","cache_control":{{"type":"ephemeral"}}}}]"#,
            "s".repeat(400)
        );
        let short =
            format!(r#"{{"model":"m","system":{system},"messages":[{{"role":"user","content":"hi"}}]}}"#);
        Prompt::of(&view(&short)).usage(&cache);
        let long = format!(
            r#"{{"model":"m","system":{system},"messages":[{{"role":"user","content":[
                {{"type":"text","text":"{}","cache_control":{{"type":"ephemeral"}}}}]}},
                {{"role":"assistant","content":"ok"}},{{"role":"user","content":"next"}}]}}"#,
            "u".repeat(200)
        );
        let usage = Prompt::of(&view(&long)).usage(&cache);
        assert_eq!(
            usage,
            InputUsage { input_tokens: 2, cache_creation_input_tokens: 50, cache_read_input_tokens: 100 }
        );
    }

    #[test]
    fn validation_speaks_the_apis_words() {
        let check = |json: &str| validate(&view(json), true).err();
        assert_eq!(check(r#"{"max_tokens":1,"messages":[]}"#).unwrap(), "model: Field required");
        assert_eq!(
            check(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).unwrap(),
            "max_tokens: Field required"
        );
        assert_eq!(check(r#"{"model":"m","max_tokens":1}"#).unwrap(), "messages: Field required");
        assert_eq!(
            check(r#"{"model":"m","max_tokens":1,"messages":[]}"#).unwrap(),
            "messages: at least one message is required"
        );
        assert_eq!(
            check(r#"{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":"x"}]}"#).unwrap(),
            "messages: first message must use the \"user\" role"
        );
        assert_eq!(
            check(r#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":"x"},{"role":"system","content":"x"}]}"#)
                .unwrap(),
            "messages.1.role: Input should be 'user' or 'assistant'"
        );
        let thinking = |max: u64, budget: u64| {
            check(&format!(
                r#"{{"model":"m","max_tokens":{max},"thinking":{{"type":"enabled","budget_tokens":{budget}}},
                    "messages":[{{"role":"user","content":"x"}}]}}"#
            ))
        };
        assert_eq!(thinking(2000, 1024), None);
        assert!(thinking(2000, 1000).unwrap().contains("greater than or equal to 1024"));
        assert_eq!(
            thinking(1024, 1024).unwrap(),
            "`max_tokens` must be greater than `thinking.budget_tokens`."
        );
        // count_tokens needs no max_tokens.
        assert_eq!(
            validate(&view(r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#), false),
            Ok(())
        );
    }

    #[test]
    fn stop_sequences_cut_the_text_before_the_earliest_match() {
        let plan = |extra: &str| {
            plan(
                &view(&format!(
                    r#"{{"model":"m","max_tokens":100,"messages":[{{"role":"user","content":"x"}}]{extra}}}"#
                )),
                5,
            )
        };
        let Answer::Text { text, stop_reason, stop_sequence } =
            plan(r#","stop_sequences":["tok3","tok1 t"]"#).answer
        else {
            panic!("a text answer")
        };
        assert_eq!(
            (text.as_str(), stop_reason, stop_sequence.as_deref()),
            ("tok0 ", "stop_sequence", Some("tok1 t"))
        );
        let Answer::Text { text, stop_reason, .. } = plan(r#","stop_sequences":["never"]"#).answer else {
            panic!("a text answer")
        };
        assert_eq!((text.as_str(), stop_reason), ("tok0 tok1 tok2 tok3 tok4 ", "end_turn"));
    }
}
