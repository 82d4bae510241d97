//! The request rules the real Messages API enforces that the agent must follow.

use serde_json::{json, Value};

/// The text of the last user message's text blocks (tool results excluded).
pub fn last_user_text(body: &Value) -> String {
    let Some(last) = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
    else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Checks a request body the way the real API does for the rules the agent
/// must follow: required fields, alternating roles starting with the user,
/// non-empty text, and each assistant `tool_use` answered (tool results first)
/// in the next user message, with no orphan results.
pub fn validate_request(body: &Value) -> Result<(), String> {
    if body["model"].as_str().is_none_or(str::is_empty) {
        return Err("model: field required".into());
    }
    if body["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return Err("max_tokens: must be a positive integer".into());
    }
    let msgs = body["messages"]
        .as_array()
        .ok_or("messages: field required")?;
    if msgs.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let mut pending: Vec<String> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = m["role"]
            .as_str()
            .ok_or(format!("messages.{i}.role: required"))?;
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if role != expected {
            return Err(format!(
                "messages.{i}: roles must alternate between \"user\" and \"assistant\", starting with \"user\"; got {role:?}"
            ));
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(a) => a.clone(),
            _ => return Err(format!("messages.{i}.content: required")),
        };
        if blocks.is_empty() {
            return Err(format!("messages.{i}: content must be non-empty"));
        }
        let mut answered = Vec::new();
        let mut seen_other = false;
        for (j, b) in blocks.iter().enumerate() {
            match b["type"].as_str() {
                Some("text") => {
                    if b["text"].as_str().is_none_or(|t| t.is_empty()) {
                        return Err(format!("messages.{i}.content.{j}.text: text content blocks must be non-empty"));
                    }
                    seen_other = true;
                }
                Some("image") if role == "user" => {
                    check_image(b).map_err(|e| format!("messages.{i}.content.{j}.source: {e}"))?;
                    seen_other = true;
                }
                Some("tool_use") if role == "assistant" => {
                    if b["id"].as_str().is_none() || b["name"].as_str().is_none() || !b["input"].is_object() {
                        return Err(format!("messages.{i}.content.{j}: tool_use needs id, name and an input object"));
                    }
                }
                Some("tool_result") if role == "user" => {
                    if seen_other {
                        return Err(format!(
                            "messages.{i}.content.{j}: tool_result blocks must come before other content"
                        ));
                    }
                    let id = b["tool_use_id"].as_str().unwrap_or_default().to_string();
                    if !pending.contains(&id) {
                        return Err(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                    answered.push(id);
                }
                other => {
                    return Err(format!(
                        "messages.{i}.content.{j}: block type {other:?} is not allowed in a {role} message"
                    ))
                }
            }
        }
        if role == "user" {
            let missing: Vec<&String> =
                pending.iter().filter(|id| !answered.contains(id)).collect();
            if !missing.is_empty() {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing:?}"
                ));
            }
            pending.clear();
        } else {
            pending = blocks
                .iter()
                .filter(|b| b["type"] == "tool_use")
                .filter_map(|b| b["id"].as_str().map(str::to_string))
                .collect();
        }
    }
    if !pending.is_empty() {
        return Err("the last assistant message has tool_use blocks without results".into());
    }
    Ok(())
}

/// Whether the request marks the system prompt and the last tool for prompt caching.
pub fn has_cache_breakpoints(body: &Value) -> bool {
    let system = body["system"]
        .as_array()
        .and_then(|s| s.last())
        .is_some_and(|b| b["cache_control"]["type"] == "ephemeral");
    let tool = body["tools"]
        .as_array()
        .and_then(|t| t.last())
        .is_some_and(|b| b["cache_control"]["type"] == "ephemeral");
    system && tool
}

/// The image media types the Messages API accepts.
pub const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Checks an image block as the API does: a base64 source of an accepted
/// type whose bytes are that type; returns the decoded image.
pub fn check_image(block: &Value) -> Result<image::DynamicImage, String> {
    use base64::Engine;
    let src = &block["source"];
    if src["type"] != "base64" {
        return Err(format!(
            "source.type must be \"base64\", got {}",
            src["type"]
        ));
    }
    let media_type = src["media_type"].as_str().unwrap_or_default();
    if !IMAGE_TYPES.contains(&media_type) {
        return Err(format!(
            "media_type {media_type:?} is not one of {IMAGE_TYPES:?}"
        ));
    }
    let data = base64::engine::general_purpose::STANDARD
        .decode(src["data"].as_str().unwrap_or_default())
        .map_err(|e| format!("data is not valid base64: {e}"))?;
    let format = image::guess_format(&data).map_err(|e| format!("data is not an image: {e}"))?;
    let actual = format.to_mime_type();
    if actual != media_type {
        return Err(format!(
            "Image does not match the provided media type {media_type} (it is {actual})"
        ));
    }
    if data.len() > 5 * 1024 * 1024 {
        return Err("image exceeds 5 MB maximum".into());
    }
    image::load_from_memory_with_format(&data, format)
        .map_err(|e| format!("Could not process image: {e}"))
}

/// Input tokens an image block costs: `width × height / 750`, as documented.
pub fn image_tokens(block: &Value) -> Option<i64> {
    let img = check_image(block).ok()?;
    Some((i64::from(img.width()) * i64::from(img.height()) + 749) / 750)
}
