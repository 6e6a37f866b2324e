//! Benchmarks of the Cameleer runtime.
//!
//! The criterion benchmarks live under `benches/`; the scripts that run a
//! peer tool side by side with ours and print the ratio live under
//! `scripts/`. Measured figures are recorded in the root `BENCHMARKS.md`.
#![deny(missing_docs)]
