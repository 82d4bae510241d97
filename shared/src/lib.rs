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
//! * [`blob`]: snapshot storage behind `trait BlobStore` (disk | S3).
//! * [`sandbox`]: a project's files and dev server behind `trait Sandbox`.
//! * [`agent`]: the model client, the agent's tools, its prompt and one agent step.
//! * [`workflow`]: generations as ASL state machines behind `trait Workflow`.
//! * [`error`]: the one error type and what each variant means.

pub mod api;
pub mod app;
pub mod blob;
pub mod config;
pub mod domain;
pub mod error;
pub mod sandbox;
pub mod store;
pub mod workflow;

pub use error::{Error, Result};
