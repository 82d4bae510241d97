//! Lambda fixtures (feature `lambda`): API Gateway (HTTP API, payload v2)
//! events as the gateway sends them, an endpoint function called with one,
//! and EventBridge's Step Functions status-change events.

use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::app::AppState;

/// An API Gateway v2 event for `method path` (query allowed), with the JWT
/// authorizer's `sub` claim when given, extra request headers, a JSON body and
/// the route's path parameters.
pub fn http_event(
    method: &str,
    path: &str,
    sub: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
    path_params: Value,
) -> String {
    let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
    let mut ctx = json!({
        "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "abc123", "requestId": "req-1", "routeKey": format!("{method} {raw_path}"), "stage": "$default",
        "time": "25/Nov/2026:17:00:00 +0000", "timeEpoch": 1795000000000i64,
        "http": { "method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "fixture" }
    });
    if let Some(sub) = sub {
        ctx["authorizer"] = json!({ "jwt": { "claims": { "sub": sub, "iss": "https://issuer.example" }, "scopes": null } });
    }
    let mut h = json!({ "content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com" });
    for (k, v) in headers {
        h[k.to_ascii_lowercase()] = json!(v);
    }
    json!({
        "version": "2.0", "routeKey": format!("{method} {raw_path}"), "rawPath": raw_path, "rawQueryString": query,
        "headers": h,
        "requestContext": ctx,
        "pathParameters": path_params,
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
    .to_string()
}

/// What an endpoint function answered.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers.
    pub headers: axum::http::HeaderMap,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

/// Calls endpoint function `name` with `event`, as its Lambda would.
pub async fn invoke(name: &str, state: &AppState, event: &str) -> Answer {
    let req = lambda_http::request::from_str(event).expect("valid API Gateway v2 event");
    let endpoint = crate::api::endpoint(name).expect("an endpoint function of that name");
    // Only the backends the deployed function builds (its `Uses`).
    let own = state.as_function(endpoint.name, endpoint.uses);
    let app = crate::lambda::endpoint_app(endpoint, own);
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// EventBridge's "Step Functions Execution Status Change" event, as its rule
/// delivers it to a Lambda target.
pub fn status_change_event(
    state_machine_arn: &str,
    name: &str,
    status: &str,
    error: Option<&str>,
    cause: Option<&str>,
) -> lambda_runtime::LambdaEvent<Value> {
    let execution_arn = format!(
        "{}:{name}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    );
    let payload = json!({
        "version": "0", "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
        "account": "123456789012", "time": "2026-11-25T17:00:00Z", "region": "us-east-1",
        "resources": [execution_arn],
        "detail": {
            "executionArn": execution_arn, "stateMachineArn": state_machine_arn, "name": name,
            "status": status, "startDate": 1795000000000i64, "stopDate": 1795000060000i64,
            "input": "{}", "output": null, "error": error, "cause": cause
        }
    });
    lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default())
}
