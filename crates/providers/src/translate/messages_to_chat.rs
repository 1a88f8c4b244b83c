//! An Anthropic client, any other deployment: the Messages request becomes a chat request
//! ([`request`]), the chat completion a Messages answer ([`message`]), and the chunk stream a
//! Messages event stream ([`Events`]) with Anthropic's event order.

use std::{
    collections::{HashMap, VecDeque},
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use serde_json::{Map, Value, json};
use switchyard_types::{
    anthropic::{Message, MessagesRequest, StreamEvent},
    json::Json,
    llm::{ChunkStream, ErrorClass, LlmError, Usage},
    openai::{ChatCompletion, ChatCompletionRequest, ChatMessage},
};

use super::{document, unsupported};

/// The chat request for a Messages request, naming `model`.
pub fn request(messages: &MessagesRequest, model: &str) -> Result<ChatCompletionRequest, LlmError> {
    let mut out = Vec::with_capacity(messages.messages.len() + 1);
    if let Some(system) = &messages.system {
        let text = text_of_blocks(system);
        if !text.is_empty() {
            out.push(chat_message("system", [("content", text.into())]));
        }
    }
    for (i, message) in messages.messages.iter().enumerate() {
        match message.role.as_str() {
            "user" => user(&message.content, i, &mut out)?,
            "assistant" => out.push(assistant(&message.content)),
            other => {
                return Err(unsupported(
                    &format!("messages.{i}.role"),
                    format!("messages.{i}.role is `{other}`: Messages roles are user and assistant."),
                ));
            }
        }
    }
    let extra = &messages.extra;
    let mut fields = Map::new();
    if let Some(max_tokens) = messages.max_tokens {
        fields.insert("max_tokens".into(), max_tokens.into());
    }
    for name in ["temperature", "top_p"] {
        if let Some(value) = extra.get(name) {
            fields.insert(name.into(), value.clone());
        }
    }
    if let Some(stops) = extra.get("stop_sequences").filter(|s| s.as_array().is_some_and(|a| !a.is_empty())) {
        fields.insert("stop".into(), stops.clone());
    }
    if let Some(tools) = extra.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        fields.insert("tools".into(), Value::Array(tools.iter().map(tool).collect::<Result<_, _>>()?));
    }
    if let Some(choice) = extra.get("tool_choice") {
        let kind = choice.get("type").and_then(Value::as_str);
        let mapped = match kind {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => json!({"type": "function", "function": {"name": choice.get("name")}}),
            _ => return Err(unsupported("tool_choice", "tool_choice.type must be auto, any, tool or none.")),
        };
        fields.insert("tool_choice".into(), mapped);
        if choice.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true)
            && kind != Some("none")
        {
            fields.insert("parallel_tool_calls".into(), false.into());
        }
    }
    Ok(ChatCompletionRequest {
        model: model.to_owned(),
        messages: out,
        stream: messages.stream,
        stream_options: None,
        user: messages.user_id().map(str::to_owned),
        extra: fields,
    })
}

fn chat_message<const N: usize>(role: &str, fields: [(&str, Value); N]) -> ChatMessage {
    ChatMessage { role: role.to_owned(), extra: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }
}

/// Text of a string or of the text blocks of an array, joined.
fn text_of_blocks(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// A user turn: its tool results become `tool` messages (first, as OpenAI wants them right
/// after the assistant's calls), the rest one user message.
fn user(content: &Value, i: usize, out: &mut Vec<ChatMessage>) -> Result<(), LlmError> {
    let blocks = match content {
        Value::Array(blocks) => blocks,
        other => {
            out.push(chat_message("user", [("content", other.clone())]));
            return Ok(());
        }
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({"type": "text", "text": block.get("text")})),
            Some("image") => {
                parts.push(json!({"type": "image_url", "image_url": {"url": source_url(block, i, j)?}}))
            }
            Some("document") => {
                parts.push(json!({"type": "file", "file": {"file_data": source_url(block, i, j)?}}));
            }
            Some("tool_result") => {
                let text = block.get("content").map(text_of_blocks).unwrap_or_default();
                let is_error = block.get("is_error").and_then(Value::as_bool) == Some(true);
                let text = if is_error { format!("Error: {text}") } else { text };
                out.push(chat_message(
                    "tool",
                    [
                        ("tool_call_id", block.get("tool_use_id").cloned().unwrap_or_default()),
                        ("content", text.into()),
                    ],
                ));
            }
            other => {
                return Err(unsupported(
                    &format!("messages.{i}.content.{j}.type"),
                    format!(
                        "content blocks of type `{}` can only go to an Anthropic model; this model takes text, image, document and tool_result.",
                        other.unwrap_or("(none)")
                    ),
                ));
            }
        }
    }
    if !parts.is_empty() {
        out.push(chat_message("user", [("content", Value::Array(parts))]));
    }
    Ok(())
}

/// An image's or document's source as a URL: a data URL for base64, the URL itself otherwise.
fn source_url(block: &Value, i: usize, j: usize) -> Result<String, LlmError> {
    let source = block.get("source");
    let field = |name: &str| source.and_then(|s| s.get(name)).and_then(Value::as_str);
    match field("type") {
        Some("base64") => Ok(format!(
            "data:{};base64,{}",
            field("media_type").unwrap_or_default(),
            field("data").unwrap_or_default()
        )),
        Some("url") => Ok(field("url").unwrap_or_default().to_owned()),
        _ => Err(unsupported(
            &format!("messages.{i}.content.{j}.source"),
            "only base64 and url sources can go to a model that is not Anthropic's.",
        )),
    }
}

/// An assistant turn: text joined, tool uses as tool calls, thinking dropped (no other
/// dialect takes it back).
fn assistant(content: &Value) -> ChatMessage {
    let Value::Array(blocks) = content else {
        return chat_message("assistant", [("content", content.clone())]);
    };
    let text = text_of_blocks(content);
    let calls: Vec<Value> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .map(|b| {
            json!({"id": b.get("id"), "type": "function", "function": {
                "name": b.get("name"),
                "arguments": b.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
            }})
        })
        .collect();
    let content = if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() };
    if calls.is_empty() {
        chat_message("assistant", [("content", content)])
    } else {
        chat_message("assistant", [("content", content), ("tool_calls", Value::Array(calls))])
    }
}

/// An Anthropic custom tool as an OpenAI function tool; Anthropic's own tools (web search,
/// code execution, ...) run only on Anthropic's side.
fn tool(tool: &Value) -> Result<Value, LlmError> {
    match tool.get("type").and_then(Value::as_str) {
        None | Some("custom") => Ok(json!({"type": "function", "function": {
            "name": tool.get("name"),
            "description": tool.get("description").cloned().unwrap_or_else(|| "".into()),
            "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
        }})),
        Some(kind) => Err(unsupported(
            "tools",
            format!(
                "the tool type `{kind}` is one of Anthropic's server tools and runs only on Anthropic models."
            ),
        )),
    }
}

/// Anthropic's stop reason for an OpenAI finish reason.
fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// Usage in Anthropic's fields (`input_tokens` without the cache's tokens).
fn anthropic_usage(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input.saturating_sub(usage.cached_input + usage.cache_creation),
        "output_tokens": usage.output,
        "cache_creation_input_tokens": usage.cache_creation,
        "cache_read_input_tokens": usage.cached_input,
    })
}

/// The Messages answer for a chat completion (its first choice).
pub fn message(completion: &Json<ChatCompletion>) -> Result<Json<Message>, LlmError> {
    let parsed = completion.parse().map_err(|e| unreadable("answer", &e))?;
    let choice = parsed.choices.first();
    let reply = choice.and_then(|c| c.get("message"));
    let mut content = Vec::new();
    if let Some(text) = reply.and_then(|m| m.get("content")).and_then(Value::as_str).filter(|t| !t.is_empty())
    {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in reply.and_then(|m| m.get("tool_calls")).and_then(Value::as_array).into_iter().flatten() {
        content.push(json!({
            "type": "tool_use",
            "id": call.get("id"),
            "name": call.pointer("/function/name"),
            "input": arguments(call.pointer("/function/arguments")),
        }));
    }
    let finish = choice.and_then(|c| c.get("finish_reason")).and_then(Value::as_str);
    let body = json!({
        "id": parsed.id,
        "type": "message",
        "role": "assistant",
        "model": parsed.model,
        "content": content,
        "stop_reason": stop_reason(finish),
        "stop_sequence": null,
        "usage": anthropic_usage(&completion.usage().unwrap_or_default()),
    });
    document(&body)
}

/// Tool-call arguments as an object; arguments that are not JSON are kept as a string under
/// `arguments`, so that nothing the model wrote is lost.
fn arguments(raw: Option<&Value>) -> Value {
    let raw = raw.and_then(Value::as_str).unwrap_or("{}");
    match serde_json::from_str::<Value>(raw) {
        Ok(value @ Value::Object(_)) => value,
        _ if raw.trim().is_empty() => json!({}),
        _ => json!({"arguments": raw}),
    }
}

fn unreadable(what: &str, err: &serde_json::Error) -> LlmError {
    LlmError::new(ErrorClass::UpstreamServer, format!("the OpenAI-dialect {what} could not be read: {err}"))
}

/// The content block open in the Messages stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Thinking,
    /// A tool use, for the OpenAI tool call of this index.
    Tool(u64),
}

/// Anthropic stream events from chat completion chunks: `message_start` with the first chunk,
/// then content blocks as text, reasoning and tool calls arrive, and `message_delta` (stop
/// reason and usage) and `message_stop` when the chunks end, since OpenAI reports usage after
/// the finish reason.
pub struct Events {
    chunks: ChunkStream,
    started: bool,
    /// The open block and its index.
    open: Option<(Block, u64)>,
    next_index: u64,
    /// OpenAI tool call index → the block that carries it.
    tools: HashMap<u64, u64>,
    stop_reason: &'static str,
    usage: Usage,
    ready: VecDeque<Value>,
    done: bool,
}

impl Events {
    /// Translates `chunks`.
    pub fn new(chunks: ChunkStream) -> Self {
        Self {
            chunks,
            started: false,
            open: None,
            next_index: 0,
            tools: HashMap::new(),
            stop_reason: "end_turn",
            usage: Usage::default(),
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// Opens a block of `kind` unless it is open already; returns its index.
    fn open(&mut self, kind: Block, start: Value) -> u64 {
        if let Some((open, index)) = self.open
            && open == kind
        {
            return index;
        }
        self.close();
        let index = self.next_index;
        self.next_index += 1;
        self.ready.push_back(json!({"type": "content_block_start", "index": index, "content_block": start}));
        self.open = Some((kind, index));
        index
    }

    fn close(&mut self) {
        if let Some((_, index)) = self.open.take() {
            self.ready.push_back(json!({"type": "content_block_stop", "index": index}));
        }
    }

    fn delta(&mut self, index: u64, delta: Value) {
        self.ready.push_back(json!({"type": "content_block_delta", "index": index, "delta": delta}));
    }

    fn take(&mut self, chunk: &Json<switchyard_types::openai::ChatCompletionChunk>) -> Result<(), LlmError> {
        if let Some(usage) = chunk.usage() {
            self.usage.merge(&usage);
        }
        let parsed = chunk.parse().map_err(|e| unreadable("stream chunk", &e))?;
        if !self.started {
            self.started = true;
            self.ready.push_back(json!({"type": "message_start", "message": {
                "id": parsed.id, "type": "message", "role": "assistant", "model": parsed.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": anthropic_usage(&self.usage),
            }}));
        }
        let Some(choice) = parsed.choices.first() else { return Ok(()) };
        let delta = choice.get("delta");
        let text =
            |name: &str| delta.and_then(|d| d.get(name)).and_then(Value::as_str).filter(|t| !t.is_empty());
        if let Some(thinking) = text("reasoning_content") {
            let index =
                self.open(Block::Thinking, json!({"type": "thinking", "thinking": "", "signature": ""}));
            self.delta(index, json!({"type": "thinking_delta", "thinking": thinking}));
        }
        if let Some(content) = text("content") {
            let index = self.open(Block::Text, json!({"type": "text", "text": ""}));
            self.delta(index, json!({"type": "text_delta", "text": content}));
        }
        for call in delta.and_then(|d| d.get("tool_calls")).and_then(Value::as_array).into_iter().flatten() {
            let call_index = call.get("index").and_then(Value::as_u64).unwrap_or_default();
            let index = match self.tools.get(&call_index) {
                Some(&index) => index,
                None => {
                    let start = json!({"type": "tool_use", "id": call.get("id"),
                                       "name": call.pointer("/function/name"), "input": {}});
                    let index = self.open(Block::Tool(call_index), start);
                    self.tools.insert(call_index, index);
                    index
                }
            };
            if let Some(fragment) =
                call.pointer("/function/arguments").and_then(Value::as_str).filter(|a| !a.is_empty())
            {
                self.delta(index, json!({"type": "input_json_delta", "partial_json": fragment}));
            }
        }
        if let Some(finish) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = stop_reason(Some(finish));
            self.close();
        }
        Ok(())
    }

    /// The events that end the message, once the chunks have.
    fn end(&mut self) {
        self.close();
        let usage = anthropic_usage(&self.usage);
        self.ready.push_back(json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": null}, "usage": usage}));
        self.ready.push_back(json!({"type": "message_stop"}));
    }
}

impl Stream for Events {
    type Item = Result<Json<StreamEvent>, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Poll::Ready(Some(document(&event)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(self.chunks.as_mut().poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if let Err(error) = self.take(&chunk) {
                        self.done = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
                Some(Err(error)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    self.done = true;
                    if self.started {
                        self.end();
                    }
                }
            }
        }
    }
}
