//! Kubernetes API failures as the library's error kinds.
//!
//! What can clear by itself is `NotReady`, which the state machines retry:
//! 404 (an object deleted under us), 409 (a concurrent change), 429, 5xx,
//! and connection failures or timeouts. Refusals (401/403) say which verb on
//! which resource was refused, so the fix (the Role in `infra/k8s/`, the EKS
//! access entry) is obvious. Anything else is a `Sandbox` error.

use crate::error::Error;

/// One API call, for error messages: `("patch", "pods", "project-abc")`.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The RBAC verb.
    pub verb: &'a str,
    /// The resource (with subresource, e.g. `pods/proxy`).
    pub resource: &'a str,
    /// The object name, or the label selector for collections.
    pub name: &'a str,
    /// The namespace.
    pub namespace: &'a str,
}

/// Maps a kube client error for `call`.
pub fn map(e: kube::Error, call: Call<'_>) -> Error {
    match e {
        kube::Error::Api(s) => from_status(s.code, &s.message, call),
        kube::Error::HyperError(_) | kube::Error::Service(_) => Error::NotReady(format!(
            "the Kubernetes API did not answer ({} {} {}): {e}",
            call.verb, call.resource, call.name
        )),
        other => Error::Sandbox(format!(
            "kubernetes: {} {} {} in namespace {}: {other}",
            call.verb, call.resource, call.name, call.namespace
        )),
    }
}

/// Maps an API server status code and message for `call`.
pub fn from_status(code: u16, message: &str, call: Call<'_>) -> Error {
    let Call {
        verb,
        resource,
        name,
        namespace,
    } = call;
    match code {
        401 | 403 => Error::Sandbox(format!(
            "kubernetes refused to {verb} {resource} in namespace {namespace} ({code}: {message}); \
             the driver's identity needs the `apna-sandbox-driver` Role of infra/k8s/"
        )),
        404 | 409 | 429 | 500..=599 => Error::NotReady(format!(
            "kubernetes: {verb} {resource} {name}: {code} {message}"
        )),
        _ => Error::Sandbox(format!(
            "kubernetes rejected {verb} {resource} {name} in namespace {namespace} ({code}: {message})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: Call<'static> = Call {
        verb: "patch",
        resource: "pods",
        name: "project-abc",
        namespace: "apna",
    };

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: format!("message {code}"),
            ..kube::core::Status::failure("", "")
        }))
    }

    #[test]
    fn transient_codes_are_not_ready() {
        for code in [404, 409, 429, 500, 502, 503, 504] {
            match map(api(code), CALL) {
                Error::NotReady(m) => {
                    assert!(m.contains("patch pods project-abc"), "{m}");
                    assert!(m.contains(&format!("message {code}")), "{m}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn refusals_name_the_verb_and_resource() {
        for code in [401, 403] {
            match map(api(code), CALL) {
                Error::Sandbox(m) => {
                    assert!(m.contains("refused to patch pods in namespace apna"), "{m}");
                    assert!(m.contains("infra/k8s/"), "{m}");
                }
                other => panic!("{code}: {other:?}"),
            }
        }
    }

    #[test]
    fn other_failures_are_sandbox_errors() {
        for code in [400, 410, 422] {
            assert!(matches!(map(api(code), CALL), Error::Sandbox(_)), "{code}");
        }
        let timeout = kube::Error::Service("deadline has elapsed".into());
        assert!(matches!(map(timeout, CALL), Error::NotReady(_)));
    }
}
