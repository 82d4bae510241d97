//! End-to-end test support for Apna.
//!
//! * [`mock_anthropic`]: a mock Anthropic Messages API server with scripted
//!   conversations, injectable faults and a record of requests; it also
//!   speaks Amazon Bedrock's InvokeModel wire format ([`mock_bedrock`]).
//! * [`server_process`]: `apna serve` as a child process to `kill -9`, and
//!   the memory of a process tree.
//! * [`process_cpu`]: CPU seconds of a process tree by kind of process.
//! * [`scripted_generation`]: one whole local generation against a scripted
//!   conversation, and what it stored.
//! * [`agent_harness`]: a SQLite store, an in-memory sandbox and a model client
//!   pointed at the mock, wired together for agent tests and benches.

pub mod agent_harness;
pub mod mock_anthropic;
pub mod mock_bedrock;
pub mod process_cpu;
pub mod scripted_generation;
pub mod server_process;
