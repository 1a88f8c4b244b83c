//! OpenAI embeddings ↔ AI Studio's `batchEmbedContents`: one `EmbedContentRequest` per input,
//! `dimensions` as `outputDimensionality`, the vectors back in OpenAI's list, as floats or, for
//! `encoding_format: "base64"` (the official Python SDK's default), as base64 of little-endian
//! `f32`s. `batchEmbedContents` reports no token counts, so the answer carries no `usage` rather
//! than invented counts.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError},
    openai::{EmbeddingsRequest, EmbeddingsResponse},
};

#[derive(Serialize)]
struct BatchRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: EmbedContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<&'a Value>,
}

#[derive(Serialize)]
struct EmbedContent<'a> {
    parts: [TextPart<'a>; 1],
}

#[derive(Serialize)]
struct TextPart<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    embeddings: Vec<Embedding>,
}

#[derive(Deserialize)]
struct Embedding {
    #[serde(default)]
    values: Vec<f32>,
}

/// The `batchEmbedContents` body for `request`, sent to `model`.
pub(super) fn body(request: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, LlmError> {
    let texts: Vec<&str> = match &request.input {
        Value::String(text) => vec![text],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| {
                item.as_str().ok_or_else(|| {
                    LlmError::new(
                        ErrorClass::BadRequest,
                        "input: Gemini embeds text; send strings, not token arrays",
                    )
                    .with_param("input")
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(LlmError::new(
                ErrorClass::BadRequest,
                "input must be a string or a non-empty array of strings",
            )
            .with_param("input"));
        }
    };
    let name = format!("models/{model}");
    let dimensions = request.extra.get("dimensions").filter(|d| !d.is_null());
    let batch = BatchRequest {
        requests: texts
            .into_iter()
            .map(|text| EmbedRequest {
                model: &name,
                content: EmbedContent { parts: [TextPart { text }] },
                output_dimensionality: dimensions,
            })
            .collect(),
    };
    serde_json::to_vec(&batch).map_err(|e| {
        LlmError::new(ErrorClass::Internal, format!("could not serialise the Gemini request: {e}"))
    })
}

/// OpenAI's embeddings list for Gemini's answer.
pub(super) fn response(
    body: &[u8],
    request: &EmbeddingsRequest,
    label: &str,
    model: &str,
) -> Result<Json<EmbeddingsResponse>, LlmError> {
    let unreadable = |e: serde_json::Error| {
        LlmError::new(
            ErrorClass::UpstreamServer,
            format!("{label} answered with a body that is not a Gemini embeddings response: {e}"),
        )
    };
    let batch: BatchResponse = serde_json::from_slice(body).map_err(unreadable)?;
    let base64 = request.extra.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = batch
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, embedding)| {
            let vector = if base64 {
                let bytes: Vec<u8> = embedding.values.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(STANDARD.encode(bytes))
            } else {
                json!(embedding.values)
            };
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    let list = json!({"object": "list", "data": data, "model": model});
    let bytes = serde_json::to_vec(&list).map_err(unreadable)?;
    Json::from_bytes(Bytes::from(bytes)).map_err(unreadable)
}
