//! An OpenAI chat request as a Bedrock Converse request body.
//!
//! Converse wants alternating `user` and `assistant` turns of content blocks, the system prompt
//! apart, and the inference settings in `inferenceConfig`:
//!
//! - `system` and `developer` messages → `system[{text}]`, in order, wherever they stand;
//! - `user` content (a string or parts) → `{text}` and `{image{format, source{bytes}}}` blocks
//!   (images only as `data:` URLs: Bedrock takes the bytes, not a link);
//! - `assistant` content → `{text}` blocks, its `tool_calls` → `{toolUse{toolUseId, name, input}}`;
//! - `tool` messages → a `user` turn of `{toolResult{toolUseId, content[{text}]}}`;
//! - consecutive turns of one role (tool results in a row, a tool result then the user's next
//!   words) are merged into one, since Bedrock refuses two turns of a role in a row;
//! - a part's `cache_control` (the Anthropic convention some OpenAI clients send) adds a
//!   `{cachePoint{type: default}}` block after it.
//!
//! The body is serialised from borrowed views of the request: message text, tool schemas and
//! tool arguments are written from where they are, not copied.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, value::RawValue};
use switchyard_types::{
    llm::{ErrorClass, LlmError},
    openai::{ChatCompletionRequest, ChatMessage},
};

/// The `maxTokens` sent when neither the request nor the deployment sets one.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Bedrock-native request fields a client may send as they are, next to the OpenAI ones.
const PASSTHROUGH: [&str; 6] = [
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
];

/// The Converse body for `chat`; `max_tokens` is sent when the request sets none.
pub fn converse_body(chat: &ChatCompletionRequest, max_tokens: u32) -> Result<Vec<u8>, LlmError> {
    let request = ConverseRequest::new(chat, max_tokens)?;
    serde_json::to_vec(&request).map_err(|e| {
        LlmError::new(ErrorClass::Internal, format!("could not serialise the Bedrock request: {e}"))
    })
}

// === the body ===

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConverseRequest<'a> {
    messages: Vec<Turn<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    inference_config: InferenceConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(flatten)]
    passthrough: BTreeMap<&'static str, &'a Value>,
}

#[derive(Serialize)]
struct Turn<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

/// A content block: exactly one member, as Converse's union types are written.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(&'a str),
    Image(Image<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
struct Image<'a> {
    format: &'static str,
    source: ImageSource<'a>,
}

#[derive(Serialize)]
struct ImageSource<'a> {
    /// Base64, as the data URL carries it: Bedrock's JSON takes the bytes base64-encoded.
    bytes: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: ToolInput<'a>,
}

/// A tool call's arguments, written as the client sent them (already JSON).
#[derive(Serialize)]
#[serde(untagged)]
enum ToolInput<'a> {
    Json(&'a RawValue),
    /// `arguments: ""`: no arguments, an empty object to Bedrock.
    Empty(EmptyObject),
}

#[derive(Serialize)]
struct EmptyObject {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: &'a str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InferenceConfig<'a> {
    max_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoice<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tool<'a> {
    tool_spec: ToolSpec<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolSpec<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: InputSchema<'a>,
}

#[derive(Serialize)]
struct InputSchema<'a> {
    json: SchemaJson<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum SchemaJson<'a> {
    Given(&'a Value),
    /// A function without `parameters` takes none: an empty object schema.
    NoParameters(NoParameters),
}

#[derive(Serialize)]
struct NoParameters {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: EmptyObject,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolChoice<'a> {
    Auto(EmptyObject),
    Any(EmptyObject),
    Tool(NamedTool<'a>),
}

#[derive(Serialize)]
struct NamedTool<'a> {
    name: &'a str,
}

// === impl ConverseRequest ===

impl<'a> ConverseRequest<'a> {
    fn new(chat: &'a ChatCompletionRequest, default_max_tokens: u32) -> Result<Self, LlmError> {
        let extra = &chat.extra;
        if let Some(n) = extra.get("n").and_then(Value::as_u64).filter(|&n| n > 1) {
            return Err(bad_request(
                format!(
                    "Bedrock answers one choice per request; `n: {n}` cannot be served (send {n} requests)"
                ),
                "n",
            ));
        }
        if let Some(format) = extra.get("response_format") {
            match format.get("type").and_then(Value::as_str) {
                // `json_object` asks for JSON without a schema; OpenAI itself requires the
                // prompt to ask for JSON too, which is all Bedrock can go by.
                Some("text" | "json_object") | None => {}
                Some(other) => {
                    return Err(bad_request(
                        format!(
                            "Bedrock's Converse API has no `response_format` `{other}`; describe the schema as a tool and set `tool_choice` to it instead"
                        ),
                        "response_format",
                    ));
                }
            }
        }

        let mut system = Vec::new();
        let mut messages: Vec<Turn<'a>> = Vec::new();
        for (index, message) in chat.messages.iter().enumerate() {
            let (role, blocks) = match message.role.as_str() {
                "system" | "developer" => {
                    text_blocks(message, index, &mut system)?;
                    continue;
                }
                "user" => ("user", user_blocks(message, index)?),
                "assistant" => ("assistant", assistant_blocks(message, index)?),
                "tool" => ("user", vec![tool_result(message, index)?]),
                other => {
                    return Err(bad_request(
                        format!(
                            "messages[{index}].role `{other}` cannot be sent to Bedrock: use system, developer, user, assistant or tool"
                        ),
                        format!("messages[{index}].role"),
                    ));
                }
            };
            if blocks.is_empty() {
                continue;
            }
            match messages.last_mut() {
                Some(last) if last.role == role => last.content.extend(blocks),
                _ => messages.push(Turn { role, content: blocks }),
            }
        }

        let max_tokens = extra
            .get("max_completion_tokens")
            .and_then(Value::as_u64)
            .or_else(|| extra.get("max_tokens").and_then(Value::as_u64))
            .unwrap_or(u64::from(default_max_tokens));
        let stop_sequences = match extra.get("stop") {
            Some(Value::String(stop)) => vec![stop.as_str()],
            Some(Value::Array(stops)) => stops.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let inference_config = InferenceConfig {
            max_tokens,
            temperature: extra.get("temperature").filter(|v| !v.is_null()),
            top_p: extra.get("top_p").filter(|v| !v.is_null()),
            stop_sequences,
        };
        let passthrough =
            PASSTHROUGH.iter().filter_map(|&key| extra.get(key).map(|value| (key, value))).collect();
        Ok(Self { messages, system, inference_config, tool_config: tool_config(chat)?, passthrough })
    }
}

/// `tools` and `tool_choice` as `toolConfig`. `tool_choice: "none"` has no Converse
/// equivalent: the tools are still sent (a conversation holding tool calls needs them) and the
/// choice is left to the model.
fn tool_config(chat: &ChatCompletionRequest) -> Result<Option<ToolConfig<'_>>, LlmError> {
    let Some(tools) = chat.extra.get("tools").and_then(Value::as_array).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let tools = tools
        .iter()
        .enumerate()
        .map(|(index, tool)| {
            let function = tool.get("function");
            let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
                bad_request(
                    format!(
                        "tools[{index}] is not a function tool with a name; Bedrock takes function tools only"
                    ),
                    format!("tools[{index}]"),
                )
            })?;
            let parameters = function.and_then(|f| f.get("parameters")).filter(|p| !p.is_null());
            Ok(Tool {
                tool_spec: ToolSpec {
                    name,
                    description: function.and_then(|f| f.get("description")).and_then(Value::as_str),
                    input_schema: InputSchema {
                        json: match parameters {
                            Some(schema) => SchemaJson::Given(schema),
                            None => SchemaJson::NoParameters(NoParameters {
                                kind: "object",
                                properties: EmptyObject {},
                            }),
                        },
                    },
                },
            })
        })
        .collect::<Result<Vec<_>, LlmError>>()?;
    let tool_choice = match chat.extra.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(Value::String(choice)) => match choice.as_str() {
            "auto" => Some(ToolChoice::Auto(EmptyObject {})),
            "required" => Some(ToolChoice::Any(EmptyObject {})),
            "none" => None,
            other => {
                return Err(bad_request(
                    format!("`tool_choice: {other}` is not one of auto, required, none or a named function"),
                    "tool_choice",
                ));
            }
        },
        Some(choice) => {
            let name = choice.get("function").and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
                bad_request("`tool_choice` names no function (expected {\"type\":\"function\",\"function\":{\"name\":...}})", "tool_choice")
            })?;
            Some(ToolChoice::Tool(NamedTool { name }))
        }
    };
    Ok(Some(ToolConfig { tools, tool_choice }))
}

/// A system or developer message's text, appended to `out`.
fn text_blocks<'a>(message: &'a ChatMessage, index: usize, out: &mut Vec<Block<'a>>) -> Result<(), LlmError> {
    match message.content() {
        None => Ok(()),
        Some(Value::String(text)) => {
            push_text(out, text);
            Ok(())
        }
        Some(Value::Array(parts)) => {
            for (p, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text") | None, Some(text)) => push_text(out, text),
                    _ => {
                        return Err(bad_request(
                            format!(
                                "messages[{index}].content[{p}]: a system message can only hold text for Bedrock"
                            ),
                            format!("messages[{index}].content"),
                        ));
                    }
                }
                push_cache_point(out, part);
            }
            Ok(())
        }
        Some(_) => Err(content_shape(index)),
    }
}

fn user_blocks(message: &ChatMessage, index: usize) -> Result<Vec<Block<'_>>, LlmError> {
    let mut blocks = Vec::new();
    content_blocks(message.content(), index, &mut blocks)?;
    Ok(blocks)
}

fn assistant_blocks(message: &ChatMessage, index: usize) -> Result<Vec<Block<'_>>, LlmError> {
    let mut blocks = Vec::new();
    content_blocks(message.content(), index, &mut blocks)?;
    let calls =
        message.extra.get("tool_calls").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (c, call) in calls.iter().enumerate() {
        let param = || format!("messages[{index}].tool_calls[{c}]");
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request(format!("{} has no id", param()), param()))?;
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request(format!("{} has no function name", param()), param()))?;
        let arguments = function.and_then(|f| f.get("arguments")).and_then(Value::as_str).unwrap_or("");
        let input = if arguments.trim().is_empty() {
            ToolInput::Empty(EmptyObject {})
        } else {
            ToolInput::Json(serde_json::from_str(arguments).map_err(|e| {
                bad_request(
                    format!(
                        "{}.function.arguments is not JSON ({e}); Bedrock needs the tool input as JSON",
                        param()
                    ),
                    param(),
                )
            })?)
        };
        blocks.push(Block::ToolUse(ToolUse { tool_use_id: id, name, input }));
    }
    Ok(blocks)
}

fn tool_result(message: &ChatMessage, index: usize) -> Result<Block<'_>, LlmError> {
    let id = message.extra.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
        bad_request(
            format!("messages[{index}] is a tool result without tool_call_id"),
            format!("messages[{index}].tool_call_id"),
        )
    })?;
    let mut content = Vec::new();
    content_blocks(message.content(), index, &mut content)?;
    // Cache points belong to the turn, not inside a tool result.
    content.retain(|block| !matches!(block, Block::CachePoint(_)));
    if content.is_empty() {
        // Bedrock refuses an empty tool result; an empty string is what the tool returned.
        content.push(Block::Text(" "));
    }
    Ok(Block::ToolResult(ToolResult { tool_use_id: id, content }))
}

/// A message's content (a string, or text, refusal and image parts) as blocks.
fn content_blocks<'a>(
    content: Option<&'a Value>,
    index: usize,
    out: &mut Vec<Block<'a>>,
) -> Result<(), LlmError> {
    let parts = match content {
        None => return Ok(()),
        Some(Value::String(text)) => {
            push_text(out, text);
            return Ok(());
        }
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err(content_shape(index)),
    };
    for (p, part) in parts.iter().enumerate() {
        let param = || format!("messages[{index}].content[{p}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") | None => {
                let text = part
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad_request(format!("{} has no text", param()), param()))?;
                push_text(out, text);
            }
            Some("refusal") => {
                if let Some(text) = part.get("refusal").and_then(Value::as_str) {
                    push_text(out, text);
                }
            }
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad_request(format!("{} has no image_url.url", param()), param()))?;
                out.push(Block::Image(image(url, &param())?));
            }
            Some(other) => {
                return Err(bad_request(
                    format!(
                        "{}: `{other}` parts are not supported by the Bedrock adapter (text and image_url are)",
                        param()
                    ),
                    param(),
                ));
            }
        }
        push_cache_point(out, part);
    }
    Ok(())
}

/// A `data:image/...;base64,...` URL as an image block.
fn image<'a>(url: &'a str, param: &str) -> Result<Image<'a>, LlmError> {
    let Some(data) = url.strip_prefix("data:") else {
        return Err(bad_request(
            format!(
                "{param}: Bedrock takes images as bytes, not URLs; send the image as a data: URL (data:image/png;base64,...)"
            ),
            param,
        ));
    };
    let (meta, bytes) =
        data.split_once(',').filter(|(meta, _)| meta.ends_with(";base64")).ok_or_else(|| {
            bad_request(format!("{param}: the data: URL is not base64 (data:image/png;base64,...)"), param)
        })?;
    let format = match meta.trim_end_matches(";base64").to_ascii_lowercase().as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        other => {
            return Err(bad_request(
                format!("{param}: Bedrock takes png, jpeg, gif and webp images, not `{other}`"),
                param,
            ));
        }
    };
    Ok(Image { format, source: ImageSource { bytes } })
}

/// Appends a text block; Bedrock refuses blank text blocks, and an assistant turn's empty
/// `content` next to its tool calls is no content at all.
fn push_text<'a>(out: &mut Vec<Block<'a>>, text: &'a str) {
    if !text.is_empty() {
        out.push(Block::Text(text));
    }
}

fn push_cache_point(out: &mut Vec<Block<'_>>, part: &Value) {
    if part.get("cache_control").is_some_and(|c| !c.is_null()) {
        out.push(Block::CachePoint(CachePoint { kind: "default" }));
    }
}

fn content_shape(index: usize) -> LlmError {
    bad_request(
        format!("messages[{index}].content must be a string or an array of content parts"),
        format!("messages[{index}].content"),
    )
}

fn bad_request(message: impl Into<String>, param: impl Into<String>) -> LlmError {
    LlmError::new(ErrorClass::BadRequest, message).with_param(param)
}
