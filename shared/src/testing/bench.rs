//! What the benches share: round counts from the environment and percentiles.

/// A count from the environment (bench settings), or `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// How many rounds a bench runs of ours and of the seed's approach, from
/// `ours_var` / `seed_var`. `cargo test --all-targets` runs bench binaries
/// without `--bench`: then it is a one-round smoke run of ours only (the
/// seed's `npm install` needs the network).
pub fn bench_rounds(ours_var: &str, ours: usize, seed_var: &str, seed: usize) -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (env_count(ours_var, ours).max(1), env_count(seed_var, seed))
    } else {
        (1, 0)
    }
}

/// The `p`th percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
