//! An OpenAI client, an Anthropic deployment: the chat request becomes a Messages body
//! ([`request`]), the Messages answer a chat completion ([`completion`]), and the Messages
//! event stream chat completion chunks ([`Chunks`]).

use std::{
    collections::HashMap,
    pin::Pin,
    task::{Context, Poll},
};

use futures_core::Stream;
use serde_json::{Map, Value, json};
use switchyard_types::{
    anthropic::{Message, StreamEvent},
    json::Json,
    llm::{ErrorClass, EventStream, LlmError, Usage},
    openai::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest},
};

use super::{document, object, parse_data_url, text_of, unix_now, unsupported};

/// The `max_tokens` sent when the client set none and the deployment names no default.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Thinking budgets for OpenAI's `reasoning_effort`, as LiteLLM maps them.
const THINKING_BUDGETS: [(&str, u64); 4] =
    [("minimal", 1024), ("low", 1024), ("medium", 2048), ("high", 4096)];

/// Request fields with an Anthropic meaning of the same name, sent as they are.
const SAME_NAME: [&str; 4] = ["temperature", "top_p", "top_k", "thinking"];

/// The Messages body for `chat`, asking `model` for at most `max_tokens` when the request
/// names no limit.
pub fn request(
    chat: &ChatCompletionRequest,
    model: &str,
    default_max_tokens: u64,
) -> Result<Value, LlmError> {
    let extra = &chat.extra;
    if extra.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(unsupported(
            "n",
            "Anthropic models answer one choice per request: send n=1 (or leave it out).",
        ));
    }
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    let (system, messages) = conversation(chat)?;
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    let max_tokens = extra
        .get("max_completion_tokens")
        .or_else(|| extra.get("max_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(default_max_tokens);
    body.insert("max_tokens".into(), max_tokens.into());
    for name in SAME_NAME {
        if let Some(value) = extra.get(name).filter(|v| !v.is_null()) {
            body.insert(name.into(), value.clone());
        }
    }
    if let Some(effort) = extra.get("reasoning_effort").and_then(Value::as_str)
        && !body.contains_key("thinking")
        && let Some((_, budget)) = THINKING_BUDGETS.iter().find(|(name, _)| *name == effort)
    {
        body.insert("thinking".into(), json!({"type": "enabled", "budget_tokens": budget}));
        // Anthropic refuses a budget that is not below max_tokens.
        if max_tokens <= *budget {
            body.insert("max_tokens".into(), (budget + max_tokens).into());
        }
    }
    match extra.get("stop") {
        Some(Value::String(stop)) => {
            body.insert("stop_sequences".into(), json!([stop]));
        }
        Some(Value::Array(stops)) if !stops.is_empty() => {
            body.insert("stop_sequences".into(), Value::Array(stops.clone()));
        }
        _ => {}
    }
    if let Some(tools) = extra.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) {
        body.insert("tools".into(), Value::Array(tools.iter().map(tool).collect::<Result<_, _>>()?));
    }
    if let Some(choice) = tool_choice(extra)? {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(user) = &chat.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if chat.is_stream() {
        body.insert("stream".into(), true.into());
    }
    Ok(Value::Object(body))
}

/// The system blocks and the messages, with consecutive messages of one role merged (tool
/// results are user turns in Anthropic's dialect, and parallel results go in one turn).
fn conversation(chat: &ChatCompletionRequest) -> Result<(Vec<Value>, Vec<Value>), LlmError> {
    let mut system = Vec::new();
    let mut messages: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, message) in chat.messages.iter().enumerate() {
        let content = message.content();
        let (role, blocks) = match message.role.as_str() {
            "system" | "developer" => {
                let text = content.map(text_of).unwrap_or_default();
                if !text.is_empty() {
                    system.push(json!({"type": "text", "text": text}));
                }
                continue;
            }
            "user" => ("user", content.map(|c| user_blocks(c, i)).transpose()?.unwrap_or_default()),
            "assistant" => ("assistant", assistant_blocks(message.extra.get("tool_calls"), content, i)?),
            "tool" | "function" => {
                let id = message.extra.get("tool_call_id").and_then(Value::as_str).unwrap_or_default();
                let text = content.map(text_of).unwrap_or_default();
                ("user", vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})])
            }
            other => {
                return Err(unsupported(
                    &format!("messages[{i}].role"),
                    format!(
                        "messages[{i}] has role `{other}`, which Anthropic models do not take: use system, user, assistant or tool."
                    ),
                ));
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some((last, existing)) if last == role => existing.extend(blocks),
            _ => messages.push((role.to_owned(), blocks)),
        }
    }
    let messages =
        messages.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    Ok((system, messages))
}

/// A user message's content as Anthropic blocks.
fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, LlmError> {
    let parts = match content {
        Value::String(text) if text.is_empty() => return Ok(Vec::new()),
        Value::String(text) => return Ok(vec![json!({"type": "text", "text": text})]),
        Value::Array(parts) => parts,
        _ => return Ok(Vec::new()),
    };
    parts
        .iter()
        .enumerate()
        .map(|(j, part)| {
            let kind = part.get("type").and_then(Value::as_str).unwrap_or("text");
            match kind {
                "text" => Ok(json!({"type": "text", "text": part.get("text").cloned().unwrap_or_default()})),
                "image_url" => {
                    let url = part.pointer("/image_url/url").and_then(Value::as_str).unwrap_or_default();
                    Ok(json!({"type": "image", "source": media_source(url)}))
                }
                "file" => {
                    let data = part.pointer("/file/file_data").and_then(Value::as_str).unwrap_or_default();
                    match parse_data_url(data) {
                        Some(_) => Ok(json!({"type": "document", "source": media_source(data)})),
                        None => Err(unsupported(
                            &format!("messages[{i}].content[{j}]"),
                            "Anthropic models take files as base64 data (file.file_data: data:application/pdf;base64,...), not file ids.",
                        )),
                    }
                }
                other => Err(unsupported(
                    &format!("messages[{i}].content[{j}].type"),
                    format!("content parts of type `{other}` cannot be sent to an Anthropic model: use text, image_url or file."),
                )),
            }
        })
        .collect()
}

/// An image or document source: base64 for a data URL, else a URL Anthropic fetches.
fn media_source(url: &str) -> Value {
    match parse_data_url(url) {
        Some((media_type, data)) => json!({"type": "base64", "media_type": media_type, "data": data}),
        None => json!({"type": "url", "url": url}),
    }
}

/// An assistant message's text and tool calls as Anthropic blocks.
fn assistant_blocks(
    calls: Option<&Value>,
    content: Option<&Value>,
    i: usize,
) -> Result<Vec<Value>, LlmError> {
    let mut blocks = Vec::new();
    let text = content.map(text_of).unwrap_or_default();
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for (j, call) in calls.and_then(Value::as_array).into_iter().flatten().enumerate() {
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        let input: Value = if arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                unsupported(
                    &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    format!("the arguments of messages[{i}].tool_calls[{j}] are not JSON ({e}); Anthropic needs them as an object."),
                )
            })?
        };
        blocks.push(json!({
            "type": "tool_use",
            "id": call.get("id").cloned().unwrap_or_default(),
            "name": call.pointer("/function/name").cloned().unwrap_or_default(),
            "input": input,
        }));
    }
    Ok(blocks)
}

/// An OpenAI function tool as an Anthropic tool.
fn tool(tool: &Value) -> Result<Value, LlmError> {
    let kind = tool.get("type").and_then(Value::as_str).unwrap_or("function");
    let Some(function) = tool.get("function").filter(|_| kind == "function") else {
        return Err(unsupported(
            "tools",
            format!("tools of type `{kind}` cannot be sent to an Anthropic model: use function tools."),
        ));
    };
    let mut out = Map::new();
    out.insert("name".into(), function.get("name").cloned().unwrap_or_default());
    if let Some(description) = function.get("description") {
        out.insert("description".into(), description.clone());
    }
    let schema =
        function.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

/// `tool_choice` and `parallel_tool_calls` as Anthropic's `tool_choice`.
fn tool_choice(extra: &Map<String, Value>) -> Result<Option<Value>, LlmError> {
    let choice = match extra.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => Some(json!({"type": "auto"})),
        Some(Value::String(s)) if s == "required" => Some(json!({"type": "any"})),
        Some(Value::String(s)) if s == "none" => Some(json!({"type": "none"})),
        Some(choice) => match choice.pointer("/function/name") {
            Some(name) => Some(json!({"type": "tool", "name": name})),
            None => {
                return Err(unsupported(
                    "tool_choice",
                    "tool_choice must be auto, required, none or {\"type\":\"function\",\"function\":{\"name\":...}}.",
                ));
            }
        },
    };
    let serial = extra.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false);
    Ok(match (choice, serial) {
        (Some(mut choice), true) if choice["type"] != "none" => {
            choice["disable_parallel_tool_use"] = true.into();
            Some(choice)
        }
        (None, true) if extra.get("tools").is_some() => {
            Some(json!({"type": "auto", "disable_parallel_tool_use": true}))
        }
        (choice, _) => choice,
    })
}

/// OpenAI's finish reason for an Anthropic stop reason.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Usage in OpenAI's fields (`prompt_tokens` counting the cache's tokens too).
fn openai_usage(usage: &Usage) -> Value {
    let mut out = json!({
        "prompt_tokens": usage.input,
        "completion_tokens": usage.output,
        "total_tokens": usage.total(),
        "prompt_tokens_details": {"cached_tokens": usage.cached_input},
    });
    if usage.cache_creation > 0 {
        out["cache_creation_input_tokens"] = usage.cache_creation.into();
    }
    out
}

/// The chat completion for an Anthropic `message`.
pub fn completion(message: &Json<Message>) -> Result<Json<ChatCompletion>, LlmError> {
    let parsed = message.parse().map_err(|e| unreadable("answer", &e))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in &parsed.content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or_default())
            }
            Some("tool_use") => calls.push(json!({
                "id": block.get("id").cloned().unwrap_or_default(),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or_default(),
                    "arguments": block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                },
            })),
            _ => {}
        }
    }
    let mut reply = Map::new();
    reply.insert("role".into(), "assistant".into());
    reply.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() { Value::Null } else { text.into() },
    );
    if !reasoning.is_empty() {
        reply.insert("reasoning_content".into(), reasoning.into());
    }
    if !calls.is_empty() {
        reply.insert("tool_calls".into(), Value::Array(calls));
    }
    let choice = object([
        ("index", 0.into()),
        ("message", Value::Object(reply)),
        ("logprobs", Value::Null),
        ("finish_reason", finish_reason(parsed.stop_reason.as_deref()).into()),
    ]);
    let completion = json!({
        "id": parsed.id,
        "object": "chat.completion",
        "created": unix_now(),
        "model": parsed.model,
        "choices": [choice],
        "usage": openai_usage(&message.usage().unwrap_or_default()),
    });
    document(&completion)
}

fn unreadable(what: &str, err: &serde_json::Error) -> LlmError {
    LlmError::new(ErrorClass::UpstreamServer, format!("the Anthropic {what} could not be read: {err}"))
}

/// Chat completion chunks from an Anthropic event stream, each as soon as the event that
/// makes it arrives. Ends, after a last usage-only chunk, at `message_stop`.
pub struct Chunks {
    events: EventStream,
    id: String,
    model: String,
    created: u64,
    usage: Usage,
    /// Anthropic content block index → OpenAI tool call index, for the tool-use blocks.
    tools: HashMap<u64, usize>,
    done: bool,
}

impl Chunks {
    /// Translates `events`.
    pub fn new(events: EventStream) -> Self {
        Self {
            events,
            id: String::new(),
            model: String::new(),
            created: unix_now(),
            usage: Usage::default(),
            tools: HashMap::new(),
            done: false,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    /// The chunks (none, or one) that `event` makes.
    fn translate(&mut self, event: &Json<StreamEvent>) -> Result<Option<Value>, LlmError> {
        if let Some(usage) = event.usage() {
            self.usage.merge(&usage);
        }
        let parsed = event.parse().map_err(|e| unreadable("stream event", &e))?;
        let field = |name: &str| parsed.extra.get(name);
        Ok(match parsed.kind.as_str() {
            "message_start" => {
                let message = field("message");
                self.id =
                    message.and_then(|m| m.get("id")).and_then(Value::as_str).unwrap_or_default().to_owned();
                self.model = message
                    .and_then(|m| m.get("model"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                Some(self.chunk(json!({"role": "assistant", "content": ""}), None))
            }
            "content_block_start" => {
                let block = field("content_block");
                let kind = block.and_then(|b| b.get("type")).and_then(Value::as_str);
                let index = field("index").and_then(Value::as_u64).unwrap_or_default();
                match (kind, block) {
                    (Some("tool_use"), Some(block)) => {
                        let call = self.tools.len();
                        self.tools.insert(index, call);
                        Some(self.chunk(
                            json!({"tool_calls": [{"index": call, "id": block.get("id"), "type": "function",
                                   "function": {"name": block.get("name"), "arguments": ""}}]}),
                            None,
                        ))
                    }
                    (Some("text"), Some(block)) => block
                        .get("text")
                        .and_then(Value::as_str)
                        .filter(|t| !t.is_empty())
                        .map(|text| self.chunk(json!({"content": text}), None)),
                    _ => None,
                }
            }
            "content_block_delta" => {
                let delta = field("delta");
                let text = |name: &str| delta.and_then(|d| d.get(name)).and_then(Value::as_str);
                match delta.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => Some(self.chunk(json!({"content": text("text")}), None)),
                    Some("thinking_delta") => {
                        Some(self.chunk(json!({"reasoning_content": text("thinking")}), None))
                    }
                    // The first fragment is often empty: nothing to send.
                    Some("input_json_delta") if text("partial_json").is_none_or(str::is_empty) => None,
                    Some("input_json_delta") => {
                        let index = field("index").and_then(Value::as_u64).unwrap_or_default();
                        let call = self.tools.get(&index).copied().unwrap_or_default();
                        Some(self.chunk(
                            json!({"tool_calls": [{"index": call, "function": {"arguments": text("partial_json")}}]}),
                            None,
                        ))
                    }
                    _ => None,
                }
            }
            "message_delta" => {
                let stop = field("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str);
                stop.map(|stop| self.chunk(json!({}), Some(finish_reason(Some(stop)))))
            }
            "message_stop" => {
                self.done = true;
                let mut last = self.chunk(json!({}), None);
                last["choices"] = json!([]);
                last["usage"] = openai_usage(&self.usage);
                Some(last)
            }
            _ => None,
        })
    }
}

impl Stream for Chunks {
    type Item = Result<Json<ChatCompletionChunk>, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(self.events.as_mut().poll_next(cx)) {
                Some(Ok(event)) => match self.translate(&event) {
                    Ok(Some(chunk)) => return Poll::Ready(Some(document(&chunk))),
                    Ok(None) => {}
                    Err(error) => {
                        self.done = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                },
                Some(Err(error)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    self.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}
