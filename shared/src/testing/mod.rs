//! Every test double and fixture, in one place (kube-rs's controller-rs keeps
//! its API-server mocks in one `fixtures.rs` the same way). Built for this
//! crate's own unit tests and, with the cargo feature `testing`, for the
//! integration tests, benches and the `apna-tests` crate. Nothing here is
//! part of a deployed binary.
//!
//! * [`memory`]: an in-memory sandbox and a provider of them.
//! * [`faults`]: a blob store and sandboxes that fail or "crash" on the k-th call.
//! * [`model`]: a model that must not be called.
//! * [`workflow`]: a recording workflow, scripted task invokers, an in-memory execution log.
//! * [`api`]: the API called in process, over a real store.
//! * [`fixtures`]: configs, stores, blob stores, projects and source trees.
//! * [`local`]: the real template installed once, local sandboxes, the preview proxy.
//! * [`services`]: where the services `tests/run` starts are (PostgreSQL, moto, dynalite).
//! * [`site`]: a fake `vite build` for publishing, and requests to published sites.
//! * `sfn` (feature `aws`): Step Functions clients for moto.
//! * `lambda` (feature `lambda`): API Gateway and EventBridge events, endpoint functions called with them.
//! * [`browser`]: Chromium rendering a page, for browser smoke checks.
//! * [`bench`]: what the benches share.
//! * [`verify_fixtures`]: projects with the errors Verify must find.

// Test code: a failed set-up should stop the test where it happened.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod api;
pub mod bench;
pub mod browser;
pub mod faults;
pub mod fixtures;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod local;
pub mod memory;
pub mod model;
pub mod services;
#[cfg(feature = "aws")]
pub mod sfn;
pub mod site;
pub mod verify_fixtures;
pub mod workflow;
