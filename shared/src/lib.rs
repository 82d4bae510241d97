//! Apna: a self-hostable AI app builder.
//!
//! A person describes an app; an agent (Claude with file and shell tools)
//! writes a React + Vite project inside that project's sandbox while the person
//! watches a live preview. This crate holds everything that is not a `main()`;
//! the binaries in `functions/` are thin wrappers around it.
//!
//! The major components are, from the bottom up (a module uses only those
//! above it in this list; `docs/architecture.md` has the picture and
//! `tests/architecture.rs` checks it):
//!
//! * [`error`]: the one error type and what each variant means.
//! * [`config`]: every setting, read from the environment.
//! * [`domain`]: projects, runs, messages, events, versions and their status rules.
//! * [`diff`]: a file's change as a unified diff and line counts.
//! * [`store`]: durable state behind `trait Store` (SQLite | PostgreSQL).
//! * [`blob`]: object storage behind `trait BlobStore` (disk | S3).
//! * [`images`]: images attached to messages: checked, scaled to the model, stored, inlined.
//! * [`sandbox`]: a project's files and dev server behind `trait Sandbox` (local processes;
//!   in a pod, `apna sandboxd` serving one workspace and `RemoteSandbox` its client).
//! * [`starter`]: the templates a project can begin from (`images/preview/templates`).
//! * [`snapshot`]: source-only snapshots, versions, hibernation and wake.
//! * [`agent`]: the model client behind `trait Model`, the tools, one agent step.
//! * [`workflow`]: the engine running `statemachines/*.asl.json` behind
//!   `trait Workflow` (built-in interpreter | Step Functions).
//! * [`app`]: the backends every handler gets, and the API's state (backends + workflow).
//! * [`project`]: a project's life outside runs: create, status, files, wake, delete, purge.
//! * [`publish`]: a version published as a static site: slugs, build, deploys, the flip.
//! * `git` (feature `git`): versions as Git commits, a bundle, pushes over HTTPS.
//! * [`run`]: a run's start, progress events and end, the same from every entry point.
//! * [`tasks`]: the handlers behind the state machines' Task states.
//! * [`preview`]: the host-based preview proxy, WebSocket HMR included.
//! * [`light_sleep`]: idle previews stop their dev server and keep their files.
//! * [`site`]: published sites served from the blob store by `apna serve`.
//! * [`api`]: the HTTP API, its auth, errors and OpenAPI document.
//! * [`server`]: `apna serve` assembled; `lambda` (feature `lambda`): the same handlers on AWS Lambda.
//! * `xray` (feature `aws`): X-Ray subsegments for AWS, model and sandbox calls on Lambda.
//! * `testing` (feature `testing`): every test double and fixture, in one place.

pub mod agent;
pub mod api;
pub mod app;
pub mod blob;
pub mod config;
pub mod diff;
pub mod domain;
pub mod error;
#[cfg(feature = "git")]
pub mod git;
pub mod images;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod light_sleep;
pub mod preview;
pub mod project;
pub mod publish;
pub mod run;
pub mod sandbox;
pub mod server;
pub mod site;
pub mod snapshot;
pub mod starter;
pub mod store;
pub mod tasks;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod workflow;
#[cfg(feature = "aws")]
pub mod xray;

pub use error::{Error, Result};
