//! Apna: a self-hostable AI app builder.
//!
//! A person describes an app; an agent (Claude with file and shell tools)
//! writes a React + Vite project inside that project's sandbox while the person
//! watches a live preview. This crate holds everything that is not a `main()`;
//! the binaries in `functions/` are thin wrappers around it.
//!
//! The major components are:
//!
//! * [`config`]: every setting, read from the environment.
//! * [`domain`]: projects, runs, messages, versions and their status rules.
//! * [`store`]: durable state behind `trait Store` (SQLite | PostgreSQL).
//! * [`blob`]: object storage behind `trait BlobStore` (disk | S3).
//! * [`sandbox`]: a project's files and dev server behind `trait Sandbox` (local processes).
//! * [`preview`]: the host-based preview proxy, WebSocket HMR included.
//! * [`agent`]: the model client behind `trait Model`, the tools, one agent step.
//! * [`snapshot`]: source-only snapshots, versions, hibernation and wake.
//! * [`workflow`]: generations as ASL state machines behind `trait Workflow`
//!   (built-in interpreter | Step Functions), and the task handlers.
//! * [`generation`]: starting and ending runs, the same from every entry point.
//! * [`lifecycle`]: where a project's files are (sandbox or snapshot).
//! * [`api`]: the HTTP API, its auth, errors and OpenAPI document.
//! * [`app`]: the shared state handed to every handler.
//! * [`server`]: `apna serve` assembled; [`lambda`]: the same handlers on AWS Lambda.
//! * [`error`]: the one error type and what each variant means.

pub mod agent;
pub mod api;
pub mod app;
pub mod blob;
pub mod config;
pub mod domain;
pub mod error;
pub mod generation;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod lifecycle;
pub mod preview;
pub mod sandbox;
pub mod server;
pub mod snapshot;
pub mod store;
pub mod workflow;

pub use error::{Error, Result};
