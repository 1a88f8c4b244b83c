//! The canonical (OpenAI Chat Completions) request → a Cohere v2 `POST /v2/chat` body, and an
//! OpenAI embeddings request → a `POST /v2/embed` body.
//!
//! The body is serialised once from borrowed views of the client's request: message texts,
//! tool schemas and tool calls are written straight from the parsed request, never copied into
//! an intermediate document. What Cohere cannot express is refused here with a
//! [`ErrorClass::BadRequest`] that names the field, before anything is sent; what it merely
//! ignores (OpenAI-only tuning such as `logprobs` or `parallel_tool_calls`) is dropped, as
//! `docs/providers.md` lists.
//!
//! Choices made where the dialects differ:
//! - a named `tool_choice` (`{"type":"function","function":{"name":X}}`) has no Cohere
//!   equivalent; it is sent as `tool_choice: "REQUIRED"` with only tool `X` in `tools`, which
//!   forces exactly that call;
//! - an assistant message with both text and `tool_calls` sends its text as `tool_plan` (what
//!   Cohere calls the reasoning that precedes a call), since a Cohere assistant turn carries
//!   either content or a plan with its calls;
//! - a function tool with `strict: true` turns on Cohere's request-wide `strict_tools`;
//! - a function without `parameters` is sent with an empty object schema, which Cohere needs.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;
use switchyard_types::{
    llm::{ErrorClass, LlmError},
    openai::{ChatCompletionRequest, ChatMessage, EmbeddingsRequest},
};

/// The `input_type` embeddings are sent with when the client names none: Cohere's v3+ embedding
/// models require one, and an OpenAI client embedding a corpus is indexing documents. A client
/// that embeds a search query passes `"input_type": "search_query"` in its request body.
pub const DEFAULT_INPUT_TYPE: &str = "search_document";

// === chat ===

/// A Cohere v2 chat body, borrowing from the client's request.
#[derive(Debug, Serialize)]
pub(crate) struct ChatBody<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict_tools: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<&'a Value>,
    stream: bool,
}

#[derive(Debug, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum Message<'a> {
    System {
        content: Content<'a>,
    },
    User {
        content: Content<'a>,
    },
    Assistant {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<Content<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_plan: Option<Cow<'a, str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_calls: Option<&'a Value>,
    },
    Tool {
        tool_call_id: &'a str,
        content: Content<'a>,
    },
}

/// A message's content: a string, or typed parts.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text(&'a str),
    Parts(Vec<Part<'a>>),
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part<'a> {
    Text { text: &'a str },
    ImageUrl { image_url: ImageUrl<'a> },
}

#[derive(Debug, Serialize)]
struct ImageUrl<'a> {
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Tool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function<'a>,
}

#[derive(Debug, Serialize)]
struct Function<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a Value>,
    parameters: Parameters<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Parameters<'a> {
    Given(&'a Value),
    /// `{"type":"object","properties":{}}`: a function that declares no parameters.
    Empty {
        #[serde(rename = "type")]
        kind: &'static str,
        properties: NoProperties,
    },
}

#[derive(Debug, Serialize)]
struct NoProperties {}

#[derive(Debug, Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    json_schema: Option<&'a Value>,
}

/// Translates `request` for `model`, streamed or not.
pub(crate) fn chat_body<'a>(
    request: &'a ChatCompletionRequest,
    model: &'a str,
) -> Result<ChatBody<'a>, LlmError> {
    let extra = &request.extra;
    let field = |name: &str| extra.get(name).filter(|v| !v.is_null());

    if let Some(n) = field("n").and_then(Value::as_u64).filter(|&n| n > 1) {
        return Err(bad_request(
            format!("Cohere answers one choice per request; `n` was {n}: send n=1"),
            "n",
        ));
    }
    let messages =
        request.messages.iter().enumerate().map(|(i, m)| message(i, m)).collect::<Result<_, _>>()?;
    let (mut tools, strict_tools) = tools(field("tools"))?;
    let tool_choice = match field("tool_choice") {
        None => None,
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => None,
            // Without tools there is nothing to forbid, and Cohere wants `tools` with a choice.
            "none" if tools.is_empty() => None,
            "none" => Some("NONE"),
            "required" => Some("REQUIRED"),
            other => {
                return Err(bad_request(
                    format!("`tool_choice` `{other}` is not one of auto, none, required or a named function"),
                    "tool_choice",
                ));
            }
        },
        Some(named) => {
            let name = named.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| {
                bad_request(
                    "`tool_choice` must be a string or {\"type\":\"function\",\"function\":{\"name\":...}}",
                    "tool_choice",
                )
            })?;
            // Cohere cannot name the tool to call; REQUIRED with that tool alone does the same.
            tools.retain(|t| t.function.name == name);
            if tools.is_empty() {
                return Err(bad_request(
                    format!("`tool_choice` names `{name}`, which is not among `tools`"),
                    "tool_choice",
                ));
            }
            Some("REQUIRED")
        }
    };
    let max_tokens = field("max_completion_tokens").or_else(|| field("max_tokens"));
    let max_tokens = match max_tokens {
        None => None,
        Some(v) => Some(
            v.as_u64().ok_or_else(|| bad_request("`max_tokens` must be a positive integer", "max_tokens"))?,
        ),
    };
    Ok(ChatBody {
        model,
        messages,
        tools,
        strict_tools,
        tool_choice,
        response_format: response_format(field("response_format"))?,
        max_tokens,
        stop_sequences: stop(field("stop"))?,
        temperature: field("temperature"),
        p: field("top_p"),
        k: field("top_k"),
        seed: field("seed"),
        frequency_penalty: field("frequency_penalty"),
        presence_penalty: field("presence_penalty"),
        stream: request.is_stream(),
    })
}

fn message(index: usize, message: &ChatMessage) -> Result<Message<'_>, LlmError> {
    let at = |what: String| bad_request(format!("messages[{index}]: {what}"), "messages");
    let content = message.content();
    match message.role.as_str() {
        // Cohere has one instruction role; OpenAI's `developer` is its newer name for `system`.
        "system" | "developer" => {
            Ok(Message::System { content: text_content(content, &at)?.unwrap_or(Content::Text("")) })
        }
        "user" => {
            let content = match content {
                Some(Value::Array(parts)) => {
                    Content::Parts(parts.iter().map(|part| user_part(part, &at)).collect::<Result<_, _>>()?)
                }
                other => text_content(other, &at)?.unwrap_or(Content::Text("")),
            };
            Ok(Message::User { content })
        }
        "assistant" => {
            let tool_calls =
                message.extra.get("tool_calls").filter(|c| c.as_array().is_some_and(|c| !c.is_empty()));
            let content = text_content(content, &at)?;
            if tool_calls.is_some() {
                let tool_plan = content.map(|c| match c {
                    Content::Text(text) => Cow::Borrowed(text),
                    Content::Parts(parts) => Cow::Owned(joined_text(&parts)),
                });
                Ok(Message::Assistant {
                    content: None,
                    tool_plan: tool_plan.filter(|p| !p.is_empty()),
                    tool_calls,
                })
            } else {
                Ok(Message::Assistant { content, tool_plan: None, tool_calls: None })
            }
        }
        "tool" => {
            let tool_call_id = message
                .extra
                .get("tool_call_id")
                .and_then(Value::as_str)
                .ok_or_else(|| at("a tool message needs `tool_call_id`".to_owned()))?;
            Ok(Message::Tool {
                tool_call_id,
                content: text_content(content, &at)?.unwrap_or(Content::Text("")),
            })
        }
        other => Err(at(format!(
            "role `{other}` has no Cohere equivalent (system, developer, user, assistant and tool do)"
        ))),
    }
}

/// Content that may only hold text: a string, or text parts (`refusal` parts of an earlier
/// assistant turn count as its text).
fn text_content<'a>(
    content: Option<&'a Value>,
    at: &dyn Fn(String) -> LlmError,
) -> Result<Option<Content<'a>>, LlmError> {
    match content {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(Content::Text(text))),
        Some(Value::Array(parts)) => {
            let parts = parts
                .iter()
                .map(|part| {
                    let text = part.get("text").or_else(|| part.get("refusal")).and_then(Value::as_str);
                    match (part.get("type").and_then(Value::as_str), text) {
                        (Some("text" | "refusal"), Some(text)) => Ok(Part::Text { text }),
                        (kind, _) => Err(at(format!(
                            "a `{}` part cannot appear here: Cohere takes only text in this role",
                            kind.unwrap_or("untyped")
                        ))),
                    }
                })
                .collect::<Result<_, _>>()?;
            Ok(Some(Content::Parts(parts)))
        }
        Some(_) => Err(at("`content` must be a string or an array of parts".to_owned())),
    }
}

fn user_part<'a>(part: &'a Value, at: &dyn Fn(String) -> LlmError) -> Result<Part<'a>, LlmError> {
    match part.get("type").and_then(Value::as_str) {
        Some("text") => part
            .get("text")
            .and_then(Value::as_str)
            .map(|text| Part::Text { text })
            .ok_or_else(|| at("a text part needs `text`".to_owned())),
        Some("image_url") => {
            let image = part.get("image_url");
            // OpenAI accepts the URL alone as a string too.
            let url = image.and_then(|i| i.get("url").or(Some(i))).and_then(Value::as_str);
            let url = url.ok_or_else(|| at("an image_url part needs `image_url.url`".to_owned()))?;
            let detail = image.and_then(|i| i.get("detail")).and_then(Value::as_str);
            Ok(Part::ImageUrl { image_url: ImageUrl { url, detail } })
        }
        Some(kind) => Err(at(format!("Cohere does not accept `{kind}` parts (text and image_url only)"))),
        None => Err(at("a content part needs `type`".to_owned())),
    }
}

fn joined_text(parts: &[Part<'_>]) -> String {
    parts.iter().filter_map(|p| if let Part::Text { text } = p { Some(*text) } else { None }).collect()
}

fn tools(tools: Option<&Value>) -> Result<(Vec<Tool<'_>>, Option<bool>), LlmError> {
    let Some(tools) = tools else { return Ok((Vec::new(), None)) };
    let tools = tools.as_array().ok_or_else(|| bad_request("`tools` must be an array", "tools"))?;
    let mut strict = false;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("function");
        let function = tool.get("function").filter(|_| kind == "function").ok_or_else(|| {
            bad_request(format!("tools[{i}]: Cohere takes function tools only, not `{kind}`"), "tools")
        })?;
        let name = function
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request(format!("tools[{i}]: a function needs `name`"), "tools"))?;
        strict |= function.get("strict").and_then(Value::as_bool).unwrap_or(false);
        let parameters = match function.get("parameters").filter(|p| !p.is_null()) {
            Some(given) => Parameters::Given(given),
            None => Parameters::Empty { kind: "object", properties: NoProperties {} },
        };
        out.push(Tool {
            kind: "function",
            function: Function {
                name,
                description: function.get("description").filter(|d| !d.is_null()),
                parameters,
            },
        });
    }
    Ok((out, strict.then_some(true)))
}

fn response_format(format: Option<&Value>) -> Result<Option<ResponseFormat<'_>>, LlmError> {
    let Some(format) = format else { return Ok(None) };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(Some(ResponseFormat { kind: "text", json_schema: None })),
        Some("json_object") => Ok(Some(ResponseFormat { kind: "json_object", json_schema: None })),
        // Cohere's JSON mode takes the schema itself; OpenAI wraps it with a name and `strict`,
        // which Cohere's schema mode always is.
        Some("json_schema") => Ok(Some(ResponseFormat {
            kind: "json_object",
            json_schema: format.pointer("/json_schema/schema").filter(|s| !s.is_null()),
        })),
        other => Err(bad_request(
            format!(
                "`response_format` type `{}` is not one of text, json_object, json_schema",
                other.unwrap_or("(none)")
            ),
            "response_format",
        )),
    }
}

fn stop(stop: Option<&Value>) -> Result<Vec<&str>, LlmError> {
    match stop {
        None => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![one.as_str()]),
        Some(Value::Array(many)) => many
            .iter()
            .map(|s| s.as_str().ok_or_else(|| bad_request("`stop` must hold strings", "stop")))
            .collect(),
        Some(_) => Err(bad_request("`stop` must be a string or an array of strings", "stop")),
    }
}

// === embeddings ===

/// A Cohere v2 embed body, borrowing from the client's request.
#[derive(Debug, Serialize)]
pub(crate) struct EmbedBody<'a> {
    model: &'a str,
    texts: Vec<&'a str>,
    input_type: &'a str,
    embedding_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimension: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<&'a Value>,
}

/// Translates an OpenAI embeddings request for `model`.
pub(crate) fn embed_body<'a>(
    request: &'a EmbeddingsRequest,
    model: &'a str,
) -> Result<EmbedBody<'a>, LlmError> {
    let token_arrays =
        || bad_request("Cohere embeds text, not token arrays: send `input` as a string or strings", "input");
    let texts = match &request.input {
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) if !items.is_empty() => {
            items.iter().map(|item| item.as_str().ok_or_else(token_arrays)).collect::<Result<_, _>>()?
        }
        Value::Array(_) => return Err(bad_request("`input` must not be empty", "input")),
        _ => return Err(token_arrays()),
    };
    let field = |name: &str| request.extra.get(name).filter(|v| !v.is_null());
    let input_type = match field("input_type") {
        None => DEFAULT_INPUT_TYPE,
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(bad_request("`input_type` must be a string", "input_type")),
    };
    Ok(EmbedBody {
        model,
        texts,
        input_type,
        embedding_types: ["float"],
        output_dimension: field("dimensions"),
        truncate: field("truncate"),
    })
}

/// Whether the client asked for base64 vectors (`encoding_format: "base64"`).
pub(crate) fn wants_base64(request: &EmbeddingsRequest) -> bool {
    request.extra.get("encoding_format").and_then(Value::as_str) == Some("base64")
}

fn bad_request(message: impl Into<String>, param: &str) -> LlmError {
    LlmError::new(ErrorClass::BadRequest, message).with_param(param)
}
