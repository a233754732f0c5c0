//! ESP seal/open benchmarks (filled in with the data plane).
fn main() {}
