//! OpenAI Chat Completions request → Gemini `GenerateContentRequest`.
//!
//! The body is serialised from borrowed views of the client's request: message text, tool
//! descriptions and image data are written straight from the parsed request, never copied
//! into an intermediate document. Only what Gemini needs in another form is built anew:
//! tool-call arguments (a JSON string in OpenAI's dialect, an object in Gemini's), tool results
//! wrapped as objects, and JSON schemas cleaned of the keywords Gemini rejects ([`schema`]).
//!
//! Every refusal is an [`ErrorClass::BadRequest`] naming the message or field at fault, so a
//! client learns what to change rather than receiving Gemini's own, less specific, 400.
//!
//! [`schema`]: super::schema

use std::{borrow::Cow, collections::HashMap};

use serde::Serialize;
use serde_json::{Map, Value};
use switchyard_types::{
    llm::{ErrorClass, LlmError},
    openai::ChatCompletionRequest,
};

use super::schema;

/// Google's documented stand-in for a thought signature the conversation history does not
/// carry (a tool call made by another model, or by a client that dropped the signature):
/// Gemini 3 refuses a function call without one in the current turn.
pub(super) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Thinking budgets for OpenAI's `reasoning_effort`, as Google's OpenAI compatibility layer
/// maps them (low 1K, medium 8K, high 24K tokens; `none` turns thinking off).
const EFFORT_BUDGETS: [(&str, i64); 5] =
    [("none", 0), ("minimal", 1024), ("low", 1024), ("medium", 8192), ("high", 24_576)];

/// The request body Gemini receives.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentRequest<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
}

#[derive(Debug, Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Part<'a> {
    Text {
        text: Cow<'a, str>,
    },
    #[serde(rename_all = "camelCase")]
    InlineData {
        inline_data: Blob<'a>,
    },
    #[serde(rename_all = "camelCase")]
    FileData {
        file_data: FileData<'a>,
    },
    #[serde(rename_all = "camelCase")]
    FunctionCall {
        function_call: FunctionCall<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        thought_signature: Option<&'a str>,
    },
    #[serde(rename_all = "camelCase")]
    FunctionResponse {
        function_response: FunctionResponse<'a>,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Blob<'a> {
    mime_type: Cow<'a, str>,
    data: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FileData<'a> {
    mime_type: &'static str,
    file_uri: &'a str,
}

#[derive(Debug, Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    args: Value,
}

#[derive(Debug, Serialize)]
struct FunctionResponse<'a> {
    name: &'a str,
    response: Value,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Tool<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Debug, Serialize)]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'a> {
    function_calling_config: FunctionCallingConfig<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'a> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_function_names: Option<Vec<&'a str>>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    thinking_budget: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    include_thoughts: bool,
}

// === impl GenerationConfig ===

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_output_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_none()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_schema.is_none()
            && self.thinking_config.is_none()
    }
}

/// A client mistake, said in terms of the OpenAI request the client sent.
fn bad_request(message: impl Into<String>) -> LlmError {
    LlmError::new(ErrorClass::BadRequest, message)
}

/// Serialises `chat` as the Gemini request body.
pub(super) fn body(chat: &ChatCompletionRequest) -> Result<Vec<u8>, LlmError> {
    let request = translate(chat)?;
    serde_json::to_vec(&request).map_err(|e| {
        LlmError::new(ErrorClass::Internal, format!("could not serialise the Gemini request: {e}"))
    })
}

/// Builds the Gemini request for `chat`.
pub(super) fn translate(chat: &ChatCompletionRequest) -> Result<GenerateContentRequest<'_>, LlmError> {
    let mut system = Vec::new();
    let mut contents: Vec<Content<'_>> = Vec::with_capacity(chat.messages.len());
    // Gemini names a function response by the function's name, OpenAI by the call's id.
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (index, message) in chat.messages.iter().enumerate() {
        let extra = &message.extra;
        let (role, parts) = match message.role.as_str() {
            "system" | "developer" => {
                system.extend(text_parts(extra.get("content"), index)?);
                continue;
            }
            "user" => ("user", user_parts(extra.get("content"), index)?),
            "assistant" => ("model", assistant_parts(extra, index, &mut call_names)?),
            "tool" | "function" => ("user", vec![tool_result(extra, index, &call_names)?]),
            other => {
                return Err(bad_request(format!(
                    "messages[{index}].role `{other}` is not one of system, developer, user, assistant, tool"
                )));
            }
        };
        if parts.is_empty() {
            continue;
        }
        // Gemini wants the results of parallel calls in one turn, and takes consecutive
        // messages of one role as one turn anyway.
        match contents.last_mut() {
            Some(last) if last.role == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content { role: Some(role), parts }),
        }
    }
    let system_instruction = (!system.is_empty()).then_some(Content { role: None, parts: system });
    let (tools, tool_config) = tools(chat)?;
    Ok(GenerateContentRequest {
        contents,
        system_instruction,
        tools,
        tool_config,
        generation_config: generation_config(&chat.extra)?,
    })
}

/// A system (or assistant) message's content: a string or text parts.
fn text_parts(content: Option<&Value>, index: usize) -> Result<Vec<Part<'_>>, LlmError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text_part(text).into_iter().collect()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(at, item)| match (item.get("type").and_then(Value::as_str), item.get("text")) {
                (Some("text"), Some(Value::String(text))) => text_part(text).map(Ok),
                // A refusal the model gave earlier is its text as far as Gemini is concerned.
                (Some("refusal"), _) => {
                    item.get("refusal").and_then(Value::as_str).and_then(text_part).map(Ok)
                }
                _ => Some(Err(bad_request(format!(
                    "messages[{index}].content[{at}]: this role takes text parts only"
                )))),
            })
            .collect(),
        Some(_) => {
            Err(bad_request(format!("messages[{index}].content must be a string or an array of parts")))
        }
    }
}

/// Gemini refuses empty text parts.
fn text_part(text: &str) -> Option<Part<'_>> {
    (!text.is_empty()).then_some(Part::Text { text: Cow::Borrowed(text) })
}

fn user_parts(content: Option<&Value>, index: usize) -> Result<Vec<Part<'_>>, LlmError> {
    let Some(Value::Array(items)) = content else { return text_parts(content, index) };
    let mut parts = Vec::with_capacity(items.len());
    for (at, item) in items.iter().enumerate() {
        let field = |name: &str| item.get(name);
        let kind = field("type").and_then(Value::as_str).unwrap_or("");
        let part = match kind {
            "text" => match field("text") {
                Some(Value::String(text)) => text_part(text),
                _ => {
                    return Err(bad_request(format!(
                        "messages[{index}].content[{at}].text must be a string"
                    )));
                }
            },
            "image_url" => {
                let url = field("image_url")
                    .and_then(|i| i.get("url").or(Some(i)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                    bad_request(format!("messages[{index}].content[{at}].image_url.url is missing"))
                })?;
                Some(media_part(url, &format!("messages[{index}].content[{at}].image_url.url"))?)
            }
            "input_audio" => {
                let audio = field("input_audio");
                let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
                let format = audio.and_then(|a| a.get("format")).and_then(Value::as_str);
                let (Some(data), Some(format)) = (data, format) else {
                    return Err(bad_request(format!(
                        "messages[{index}].content[{at}].input_audio needs data and format"
                    )));
                };
                Some(Part::InlineData {
                    inline_data: Blob { mime_type: Cow::Owned(format!("audio/{format}")), data },
                })
            }
            "file" => {
                let file = field("file");
                let Some(data) = file.and_then(|f| f.get("file_data")).and_then(Value::as_str) else {
                    return Err(bad_request(format!(
                        "messages[{index}].content[{at}].file: Gemini takes a file as file_data (a data: URL); uploaded file ids are OpenAI's"
                    )));
                };
                Some(media_part(data, &format!("messages[{index}].content[{at}].file.file_data"))?)
            }
            other => {
                return Err(bad_request(format!(
                    "messages[{index}].content[{at}]: content part type `{other}` is not supported by Gemini"
                )));
            }
        };
        parts.extend(part);
    }
    Ok(parts)
}

/// An image, audio or document given by URL: a `data:` URL becomes inline data, any other URL a
/// file reference, which Gemini needs the MIME type of.
fn media_part<'a>(url: &'a str, at: &str) -> Result<Part<'a>, LlmError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (mime_type, data) = rest.split_once(";base64,").ok_or_else(|| {
            bad_request(format!("{at}: a data: URL must be base64 (data:<type>;base64,<data>)"))
        })?;
        let mime_type = if mime_type.is_empty() { "application/octet-stream" } else { mime_type };
        return Ok(Part::InlineData { inline_data: Blob { mime_type: Cow::Borrowed(mime_type), data } });
    }
    let mime_type = mime_from_extension(url).ok_or_else(|| {
        bad_request(format!(
            "{at}: Gemini needs the MIME type of a file given by URL, and `{url}` has no known file extension; send the file as a data: URL instead"
        ))
    })?;
    Ok(Part::FileData { file_data: FileData { mime_type, file_uri: url } })
}

/// The MIME type of the formats Gemini reads, by the URL path's extension.
fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "mp4" => "video/mp4",
        "mov" => "video/mov",
        "webm" => "video/webm",
        _ => return None,
    })
}

fn assistant_parts<'a>(
    message: &'a Map<String, Value>,
    index: usize,
    call_names: &mut HashMap<&'a str, &'a str>,
) -> Result<Vec<Part<'a>>, LlmError> {
    let mut parts = text_parts(message.get("content"), index)?;
    let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) else { return Ok(parts) };
    let calls = calls
        .as_array()
        .ok_or_else(|| bad_request(format!("messages[{index}].tool_calls must be an array")))?;
    for (at, call) in calls.iter().enumerate() {
        let function = call.get("function");
        let name = function.and_then(|f| f.get("name")).and_then(Value::as_str).ok_or_else(|| {
            bad_request(format!("messages[{index}].tool_calls[{at}].function.name is missing"))
        })?;
        let args = match function.and_then(|f| f.get("arguments")) {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(text)) if text.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(text)) => serde_json::from_str(text).map_err(|e| {
                bad_request(format!("messages[{index}].tool_calls[{at}].function.arguments is not JSON: {e}"))
            })?,
            Some(object @ Value::Object(_)) => object.clone(),
            Some(_) => {
                return Err(bad_request(format!(
                    "messages[{index}].tool_calls[{at}].function.arguments must be a JSON string"
                )));
            }
        };
        if let Some(id) = call.get("id").and_then(Value::as_str) {
            call_names.insert(id, name);
        }
        // The signature Gemini gave this call, as the answer carried it (Google's own OpenAI
        // compatibility layer uses the same `extra_content` field); the first call of a turn
        // must have one, so a history without it gets Google's documented stand-in.
        let signature = call
            .pointer("/extra_content/google/thought_signature")
            .and_then(Value::as_str)
            .or((at == 0).then_some(SKIP_SIGNATURE));
        parts.push(Part::FunctionCall {
            function_call: FunctionCall { name, args },
            thought_signature: signature,
        });
    }
    Ok(parts)
}

fn tool_result<'a>(
    message: &'a Map<String, Value>,
    index: usize,
    call_names: &HashMap<&'a str, &'a str>,
) -> Result<Part<'a>, LlmError> {
    let id = message.get("tool_call_id").and_then(Value::as_str);
    let name = id
        .and_then(|id| call_names.get(id).copied())
        .or_else(|| message.get("name").and_then(Value::as_str))
        .ok_or_else(|| match id {
            Some(id) => bad_request(format!(
                "messages[{index}].tool_call_id `{id}` matches no tool call of an earlier assistant message"
            )),
            None => bad_request(format!("messages[{index}] (a tool result) needs tool_call_id")),
        })?;
    let text: Cow<'_, str> = match message.get("content") {
        None | Some(Value::Null) => Cow::Borrowed(""),
        Some(Value::String(text)) => Cow::Borrowed(text),
        Some(Value::Array(items)) => Cow::Owned(
            items.iter().filter_map(|i| i.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(""),
        ),
        Some(other) => Cow::Owned(other.to_string()),
    };
    // Gemini takes an object; Google's guide puts a function's output under `output`.
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(object @ Value::Object(_)) => object,
        Ok(other) => Value::Object(Map::from_iter([("output".to_owned(), other)])),
        Err(_) => Value::Object(Map::from_iter([("output".to_owned(), Value::String(text.into_owned()))])),
    };
    Ok(Part::FunctionResponse { function_response: FunctionResponse { name, response } })
}

type ToolsAndConfig<'a> = (Vec<Tool<'a>>, Option<ToolConfig<'a>>);

fn tools(chat: &ChatCompletionRequest) -> Result<ToolsAndConfig<'_>, LlmError> {
    let mut declarations = Vec::new();
    if let Some(tools) = chat.extra.get("tools").filter(|t| !t.is_null()) {
        let tools = tools.as_array().ok_or_else(|| bad_request("tools must be an array"))?;
        for (at, tool) in tools.iter().enumerate() {
            match tool.get("type").and_then(Value::as_str) {
                Some("function") | None => {}
                Some(other) => {
                    return Err(bad_request(format!(
                        "tools[{at}]: tool type `{other}` is not supported by Gemini"
                    )));
                }
            }
            let function = tool.get("function").unwrap_or(tool);
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad_request(format!("tools[{at}].function.name is missing")))?;
            let parameters = match function.get("parameters") {
                None | Some(Value::Null) => None,
                Some(parameters) => schema::clean(parameters)
                    .map_err(|e| bad_request(format!("tools[{at}].function.parameters: {e}")))?,
            };
            declarations.push(FunctionDeclaration {
                name,
                description: function.get("description").and_then(Value::as_str),
                parameters,
            });
        }
    }
    let config = match chat.extra.get("tool_choice") {
        None | Some(Value::Null) => None,
        Some(choice) => Some(tool_choice(choice, &mut declarations)?),
    };
    let tools =
        if declarations.is_empty() { Vec::new() } else { vec![Tool { function_declarations: declarations }] };
    Ok((tools, config))
}

/// `tool_choice` → `functionCallingConfig`. OpenAI's `allowed_tools` keeps only the listed
/// functions declared, since Gemini restricts names only in `ANY` mode.
fn tool_choice<'a>(
    choice: &'a Value,
    declarations: &mut Vec<FunctionDeclaration<'a>>,
) -> Result<ToolConfig<'a>, LlmError> {
    let config = |mode, allowed_function_names| ToolConfig {
        function_calling_config: FunctionCallingConfig { mode, allowed_function_names },
    };
    let invalid = || {
        bad_request(
            "tool_choice must be \"auto\", \"none\", \"required\", {\"type\":\"function\",\"function\":{\"name\":...}} or {\"type\":\"allowed_tools\",...}",
        )
    };
    match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Ok(config("AUTO", None)),
            "none" => Ok(config("NONE", None)),
            "required" => Ok(config("ANY", None)),
            _ => Err(invalid()),
        },
        Value::Object(object) => match object.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = choice.pointer("/function/name").and_then(Value::as_str).ok_or_else(invalid)?;
                Ok(config("ANY", Some(vec![name])))
            }
            Some("allowed_tools") => {
                let allowed = choice.get("allowed_tools").ok_or_else(invalid)?;
                let names: Vec<&str> = allowed
                    .get("tools")
                    .and_then(Value::as_array)
                    .ok_or_else(invalid)?
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .collect();
                declarations.retain(|d| names.contains(&d.name));
                match allowed.get("mode").and_then(Value::as_str) {
                    Some("required") => Ok(config("ANY", None)),
                    _ => Ok(config("AUTO", None)),
                }
            }
            _ => Err(invalid()),
        },
        _ => Err(invalid()),
    }
}

fn generation_config(extra: &Map<String, Value>) -> Result<GenerationConfig<'_>, LlmError> {
    let get = |name: &str| extra.get(name).filter(|v| !v.is_null());
    let stop_sequences = match get("stop") {
        None => None,
        Some(Value::String(stop)) => Some(vec![stop.as_str()]),
        Some(Value::Array(stops)) => Some(
            stops
                .iter()
                .map(|s| {
                    s.as_str().ok_or_else(|| bad_request("stop must be a string or an array of strings"))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err(bad_request("stop must be a string or an array of strings")),
    };
    let (response_mime_type, response_schema) = match get("response_format") {
        None => (None, None),
        Some(format) => match format.get("type").and_then(Value::as_str) {
            Some("text") => (None, None),
            Some("json_object") => (Some("application/json"), None),
            Some("json_schema") => {
                let schema = format
                    .pointer("/json_schema/schema")
                    .map(schema::clean)
                    .transpose()
                    .map_err(|e| bad_request(format!("response_format.json_schema.schema: {e}")))?
                    .flatten();
                (Some("application/json"), schema)
            }
            _ => return Err(bad_request("response_format.type must be text, json_object or json_schema")),
        },
    };
    let thinking_config = match get("reasoning_effort") {
        None => None,
        Some(effort) => {
            let effort = effort.as_str().unwrap_or("");
            let budget =
                EFFORT_BUDGETS.iter().find(|(name, _)| *name == effort).map(|(_, b)| *b).ok_or_else(
                    || {
                        bad_request(format!(
                            "reasoning_effort `{effort}` is not one of none, minimal, low, medium, high"
                        ))
                    },
                )?;
            // Thought summaries come back as `reasoning_content` when the client asked to reason.
            Some(ThinkingConfig { thinking_budget: budget, include_thoughts: budget > 0 })
        }
    };
    Ok(GenerationConfig {
        max_output_tokens: get("max_completion_tokens").or_else(|| get("max_tokens")),
        temperature: get("temperature"),
        top_p: get("top_p"),
        stop_sequences,
        candidate_count: get("n"),
        seed: get("seed"),
        presence_penalty: get("presence_penalty"),
        frequency_penalty: get("frequency_penalty"),
        response_mime_type,
        response_schema,
        thinking_config,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn translated(body: Value) -> Result<Value, LlmError> {
        let chat: ChatCompletionRequest = serde_json::from_value(body).expect("a valid request");
        let bytes = self::body(&chat)?;
        Ok(serde_json::from_slice(&bytes).expect("valid JSON"))
    }

    fn error_of(body: Value) -> String {
        match translated(body) {
            Ok(sent) => panic!("expected a refusal, translated to {sent}"),
            Err(error) => {
                assert_eq!(error.class, ErrorClass::BadRequest);
                error.message
            }
        }
    }

    #[test]
    fn refuses_what_gemini_cannot_take_naming_the_field() {
        let message = error_of(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/picture"}}]}]}));
        assert!(
            message.contains("messages[0].content[0].image_url.url") && message.contains("MIME"),
            "{message}"
        );
        let message = error_of(
            json!({"model": "m", "messages": [{"role": "tool", "tool_call_id": "nope", "content": "1"}]}),
        );
        assert!(message.contains("`nope` matches no tool call"), "{message}");
        let message = error_of(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}));
        assert!(message.contains("messages[0].role"), "{message}");
        let message = error_of(json!({"model": "m", "messages": [], "reasoning_effort": "max"}));
        assert!(message.contains("reasoning_effort"), "{message}");
    }

    #[test]
    fn an_http_image_with_a_known_extension_is_a_file_reference() {
        let sent = translated(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.JPG?size=2"}}]}]}))
        .expect("translated");
        assert_eq!(
            sent["contents"][0]["parts"][0],
            json!({"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/a/cat.JPG?size=2"}})
        );
    }

    #[test]
    fn reasoning_effort_sets_a_thinking_budget_and_asks_for_thoughts() {
        let sent = translated(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "medium"}))
            .expect("translated");
        assert_eq!(
            sent["generationConfig"]["thinkingConfig"],
            json!({"thinkingBudget": 8192, "includeThoughts": true})
        );
        let sent = translated(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "none"}))
            .expect("translated");
        assert_eq!(sent["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 0}));
    }

    #[test]
    fn allowed_tools_keeps_only_the_listed_declarations() {
        let sent = translated(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}],
            "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "b"}}]}}}))
        .expect("translated");
        assert_eq!(sent["tools"], json!([{"functionDeclarations": [{"name": "b"}]}]));
        assert_eq!(sent["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
    }
}
