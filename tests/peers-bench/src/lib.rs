//! Nothing but the benchmark in `benches/peers.rs`: microspan's record path beside fastrace and
//! `tracing`, measured in one process by criterion (`cargo bench -p microspan-peers-bench`).
//! The bench runner (`cargo run -p microspan-tests --release --bin bench`) reads criterion's
//! estimates and puts them in `BENCHMARKS.md`.
