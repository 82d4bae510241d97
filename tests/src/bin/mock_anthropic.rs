//! Mock Anthropic Messages server.
fn main() {}
