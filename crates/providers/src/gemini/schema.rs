//! JSON Schema (as OpenAI clients write tool parameters and `response_format` schemas) → the
//! OpenAPI subset Gemini's `Schema` accepts.
//!
//! Gemini refuses a request whose schema holds a keyword it does not know, so the keywords below
//! are removed (at every level, and only where they are keywords: a property that happens to be
//! called `additionalProperties` stays). What is lost is a constraint the model was told about,
//! not one Gemini enforced; the tool's own validation still applies.
//!
//! Rewritten rather than removed: local references (`$ref: "#/$defs/X"`, as Pydantic writes
//! them) are inlined from `$defs`/`definitions`, up to [`MAX_DEPTH`] levels deep (a recursive
//! schema deeper than that is refused); `const: v` becomes `enum: [v]`; `oneOf` becomes `anyOf`;
//! a type list with `"null"` (`["string", "null"]`) becomes the type with `nullable: true`. An
//! object schema without properties is dropped, since Gemini refuses an `OBJECT` with none.

use serde_json::{Map, Value};

/// Keywords Gemini's `Schema` does not accept.
const REMOVED: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "$defs",
    "definitions",
    "additionalProperties",
    "unevaluatedProperties",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "examples",
    "readOnly",
    "writeOnly",
    "deprecated",
    "contentMediaType",
    "contentEncoding",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "uniqueItems",
    "if",
    "then",
    "else",
    "not",
    "strict",
];

/// How deep local references are inlined.
pub(super) const MAX_DEPTH: usize = 32;

/// The Gemini form of `schema`; `None` for an object schema without properties (send no schema).
pub(super) fn clean(schema: &Value) -> Result<Option<Value>, String> {
    let definitions = schema.get("$defs").or_else(|| schema.get("definitions")).and_then(Value::as_object);
    let cleaned = clean_schema(schema, definitions, 0)?;
    let empty_object = cleaned.get("type").and_then(Value::as_str) == Some("object")
        && cleaned.get("properties").and_then(Value::as_object).is_none_or(Map::is_empty);
    Ok((!empty_object).then_some(cleaned))
}

fn clean_schema(
    schema: &Value,
    definitions: Option<&Map<String, Value>>,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("the schema nests (or refers to itself) more than {MAX_DEPTH} levels deep"));
    }
    let Value::Object(object) = schema else { return Ok(schema.clone()) };
    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/$defs/")
            .or_else(|| reference.strip_prefix("#/definitions/"))
            .ok_or_else(|| format!("`$ref: {reference}` is not a local reference Gemini can have inlined"))?;
        let target = definitions
            .and_then(|d| d.get(name))
            .ok_or_else(|| format!("`$ref: {reference}` names no definition"))?;
        let mut inlined = clean_schema(target, definitions, depth + 1)?;
        // Keywords beside the reference (a description, say) describe this use of it.
        if let Value::Object(inlined) = &mut inlined {
            for (key, value) in
                object.iter().filter(|(k, _)| k.as_str() != "$ref" && !REMOVED.contains(&k.as_str()))
            {
                inlined.insert(key.clone(), clean_keyword(key, value, definitions, depth)?);
            }
        }
        return Ok(inlined);
    }
    let mut out = Map::with_capacity(object.len());
    for (key, value) in object {
        if REMOVED.contains(&key.as_str()) || key == "$ref" {
            continue;
        }
        match key.as_str() {
            "const" => {
                out.insert("enum".to_owned(), Value::Array(vec![value.clone()]));
            }
            "oneOf" => {
                out.insert("anyOf".to_owned(), clean_keyword("anyOf", value, definitions, depth)?);
            }
            "type" => match value {
                Value::Array(types) => {
                    let concrete: Vec<&Value> = types.iter().filter(|t| t.as_str() != Some("null")).collect();
                    if concrete.len() < types.len() {
                        out.insert("nullable".to_owned(), Value::Bool(true));
                    }
                    match concrete.as_slice() {
                        [one] => {
                            out.insert("type".to_owned(), (*one).clone());
                        }
                        [] => {}
                        several => {
                            let any_of = several
                                .iter()
                                .map(|t| Value::Object(Map::from_iter([("type".to_owned(), (*t).clone())])));
                            out.insert("anyOf".to_owned(), Value::Array(any_of.collect()));
                        }
                    }
                }
                other => {
                    out.insert("type".to_owned(), other.clone());
                }
            },
            _ => {
                out.insert(key.clone(), clean_keyword(key, value, definitions, depth)?);
            }
        }
    }
    Ok(Value::Object(out))
}

/// A keyword's value: schemas under the keywords that hold schemas are cleaned, the rest kept.
fn clean_keyword(
    key: &str,
    value: &Value,
    definitions: Option<&Map<String, Value>>,
    depth: usize,
) -> Result<Value, String> {
    match (key, value) {
        // A map of property names to schemas: the names are the client's, not keywords.
        ("properties", Value::Object(properties)) => properties
            .iter()
            .map(|(name, schema)| Ok((name.clone(), clean_schema(schema, definitions, depth + 1)?)))
            .collect::<Result<Map<_, _>, String>>()
            .map(Value::Object),
        ("items", schema @ Value::Object(_)) => clean_schema(schema, definitions, depth + 1),
        ("anyOf" | "oneOf" | "allOf" | "prefixItems", Value::Array(schemas)) => schemas
            .iter()
            .map(|schema| clean_schema(schema, definitions, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => Ok(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn removes_keywords_gemini_refuses_but_not_properties_of_that_name() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": false,
            "properties": {"additionalProperties": {"type": "string", "examples": ["x"]},
                           "tags": {"type": "array", "items": {"type": "string", "additionalProperties": false}}},
            "required": ["tags"]
        });
        assert_eq!(
            clean(&schema).unwrap(),
            Some(json!({"type": "object", "properties": {"additionalProperties": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["tags"]}))
        );
    }

    #[test]
    fn inlines_local_references_and_rewrites_what_gemini_spells_otherwise() {
        let schema = json!({
            "$defs": {"Unit": {"type": "string", "enum": ["c", "f"]}},
            "type": "object",
            "properties": {"unit": {"$ref": "#/$defs/Unit", "description": "the unit"},
                           "city": {"type": ["string", "null"]}, "kind": {"const": "weather"},
                           "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}
        });
        assert_eq!(
            clean(&schema).unwrap(),
            Some(json!({"type": "object", "properties": {
                "unit": {"type": "string", "enum": ["c", "f"], "description": "the unit"},
                "city": {"type": "string", "nullable": true}, "kind": {"enum": ["weather"]},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}))
        );
    }

    #[test]
    fn refuses_endless_recursion_and_drops_empty_objects() {
        let recursive = json!({"$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
                               "$ref": "#/$defs/Node"});
        assert!(clean(&recursive).unwrap_err().contains("levels deep"));
        assert_eq!(clean(&json!({"type": "object", "properties": {}})).unwrap(), None);
        assert_eq!(clean(&json!({"type": "object"})).unwrap(), None);
    }
}
