//! What model calls cost, in US dollars per million tokens.
//!
//! Unknown models are priced as Claude Sonnet so a budget still applies when
//! someone points `ANTHROPIC_MODEL` at something new.

use crate::domain::Usage;

/// Dollars per million tokens of each kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// Uncached input.
    pub input: f64,
    /// Generated output (thinking included).
    pub output: f64,
    /// Input written to the prompt cache (5-minute TTL).
    pub cache_write: f64,
    /// Input read from the prompt cache.
    pub cache_read: f64,
}

/// Claude Sonnet 4.5 prices, also the fallback.
pub const SONNET: Price = Price {
    input: 3.0,
    output: 15.0,
    cache_write: 3.75,
    cache_read: 0.30,
};

// Most specific prefix first: "claude-opus-4-5" must win over "claude-opus-4".
const TABLE: &[(&str, Price)] = &[
    ("claude-sonnet-4", SONNET),
    ("claude-3-7-sonnet", SONNET),
    (
        "claude-opus-4-5",
        Price {
            input: 5.0,
            output: 25.0,
            cache_write: 6.25,
            cache_read: 0.50,
        },
    ),
    (
        "claude-opus-4",
        Price {
            input: 15.0,
            output: 75.0,
            cache_write: 18.75,
            cache_read: 1.50,
        },
    ),
    (
        "claude-haiku-4-5",
        Price {
            input: 1.0,
            output: 5.0,
            cache_write: 1.25,
            cache_read: 0.10,
        },
    ),
];

/// The price of `model` (Bedrock ids like `anthropic.claude-sonnet-4-5-…` match too).
pub fn price(model: &str) -> Price {
    let id = model
        .split_once("anthropic.")
        .map(|(_, rest)| rest)
        .unwrap_or(model);
    TABLE
        .iter()
        .find(|(prefix, _)| id.starts_with(prefix))
        .map(|(_, p)| *p)
        .unwrap_or(SONNET)
}

/// The cost of `usage` on `model`, in dollars.
pub fn cost_usd(model: &str, usage: &Usage) -> f64 {
    let p = price(model);
    let mtok = |n: i64, per: f64| n.max(0) as f64 * per / 1_000_000.0;
    mtok(usage.input_tokens, p.input)
        + mtok(usage.output_tokens, p.output)
        + mtok(usage.cache_write_tokens, p.cache_write)
        + mtok(usage.cache_read_tokens, p.cache_read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sonnet_prices_each_kind_of_token() {
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cache_read_tokens: 1_000_000,
            cache_write_tokens: 1_000_000,
        };
        let c = cost_usd("claude-sonnet-4-5", &u);
        assert!((c - (3.0 + 15.0 + 3.75 + 0.30)).abs() < 1e-9, "{c}");
        assert!((cost_usd("some-new-model", &u) - c).abs() < 1e-9);
        assert_eq!(price("claude-opus-4-5-20251101").input, 5.0);
        assert_eq!(price("claude-opus-4-1").input, 15.0);
        assert_eq!(
            price("us.anthropic.claude-haiku-4-5-20251001-v1:0").input,
            1.0
        );
    }
}
