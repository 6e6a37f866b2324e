//! Example hosts of the Cameleer runtime.
//!
//! Each example wires the crates the way a host application would: the HTTP
//! server on embedded defaults (SQLite storage, the Docker backend) and a
//! custom backend written only against the public traits.
#![deny(missing_docs)]
