//! Placeholder until the scanning benchmarks land.
fn main() {}
