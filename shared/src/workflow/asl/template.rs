//! Payload templates (`Parameters`, `ResultSelector`, `ItemSelector`): copies a
//! JSON template, replacing each `"key.$": expression` with `"key": value` where
//! the expression is a path into the input, a `$$.` context path, or an
//! intrinsic function call.

use serde_json::{Map, Value};

use super::intrinsic::Call;
use super::path::Path;
use super::TaskFailure;

/// Checks that a `key.$` value can be evaluated (used at load time).
pub fn check_expression(expr: &str) -> Result<(), String> {
    if expr.starts_with('$') {
        Path::parse(expr).map(|_| ())
    } else if expr.starts_with("States.") {
        Call::parse(expr).map(|_| ())
    } else {
        Err(format!(
            "{expr:?} is neither a path ($…) nor an intrinsic function (States.…)"
        ))
    }
}

/// Evaluates one `key.$` expression.
pub fn evaluate(expr: &str, input: &Value, context: &Value) -> Result<Value, TaskFailure> {
    if expr.starts_with('$') {
        let path = Path::parse(expr).map_err(TaskFailure::runtime)?;
        path.select(input, context).cloned().ok_or_else(|| {
            TaskFailure::runtime(format!(
                "the JSONPath {expr:?} could not be found in the {}",
                if path.context {
                    "context object"
                } else {
                    "input"
                }
            ))
        })
    } else {
        Call::parse(expr)
            .and_then(|c| c.eval(input, context))
            .map_err(|e| TaskFailure::new("States.IntrinsicFailure", e))
    }
}

/// Applies a payload template to `input`.
pub fn apply(template: &Value, input: &Value, context: &Value) -> Result<Value, TaskFailure> {
    match template {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                if let Some(key) = k.strip_suffix(".$") {
                    let Value::String(expr) = v else {
                        return Err(TaskFailure::runtime(format!(
                            "the value of {k:?} must be a string"
                        )));
                    };
                    out.insert(key.to_string(), evaluate(expr, input, context)?);
                } else {
                    out.insert(k.clone(), apply(v, input, context)?);
                }
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .map(|v| apply(v, input, context))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// Applies `InputPath`/`OutputPath`: `None` (JSON null) gives `{}`.
pub fn select(path: Option<&str>, input: &Value, context: &Value) -> Result<Value, TaskFailure> {
    match path {
        None => Ok(Value::Object(Map::new())),
        Some("$") => Ok(input.clone()),
        Some(expr) => evaluate(expr, input, context),
    }
}

/// Applies `ResultPath`: `None` (JSON null) keeps the input and drops the result.
pub fn merge_result(path: Option<&str>, input: Value, result: Value) -> Result<Value, TaskFailure> {
    match path {
        None => Ok(input),
        Some(expr) => Path::parse(expr)
            .and_then(|p| p.set(input, result))
            .map_err(|e| TaskFailure::new("States.ResultPathMatchFailure", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_resolve_paths_context_and_intrinsics() {
        let input = json!({"a": {"b": 7}, "list": [1, 2]});
        let ctx = json!({"Execution": {"Id": "arn:x", "Name": "run-9"}});
        let template = json!({
            "fixed": "v",
            "b.$": "$.a.b",
            "name.$": "$$.Execution.Name",
            "nested": {"first.$": "$.list[0]", "arr": [{"x.$": "$.a"}]},
            "msg.$": "States.Format('b is {}', $.a.b)"
        });
        assert_eq!(
            apply(&template, &input, &ctx).unwrap(),
            json!({
                "fixed": "v",
                "b": 7,
                "name": "run-9",
                "nested": {"first": 1, "arr": [{"x": {"b": 7}}]},
                "msg": "b is 7"
            })
        );
        let err = apply(&json!({"m.$": "$.missing"}), &input, &ctx).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        let err = apply(&json!({"m.$": "States.MathAdd('x', 1)"}), &input, &ctx).unwrap_err();
        assert_eq!(err.error, "States.IntrinsicFailure");
    }

    #[test]
    fn result_and_io_paths() {
        let input = json!({"a": 1});
        assert_eq!(merge_result(None, input.clone(), json!(5)).unwrap(), input);
        assert_eq!(
            merge_result(Some("$"), input.clone(), json!(5)).unwrap(),
            json!(5)
        );
        assert_eq!(
            merge_result(Some("$.r"), input.clone(), json!(5)).unwrap(),
            json!({"a": 1, "r": 5})
        );
        assert_eq!(
            merge_result(Some("$.a.x"), input.clone(), json!(5))
                .unwrap_err()
                .error,
            "States.ResultPathMatchFailure"
        );
        assert_eq!(select(None, &input, &json!({})).unwrap(), json!({}));
        assert_eq!(select(Some("$.a"), &input, &json!({})).unwrap(), json!(1));
        assert!(check_expression("nope").is_err());
        assert!(check_expression("States.Format('{}', $.a)").is_ok());
    }
}
