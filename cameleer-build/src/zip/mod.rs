//! A one-pass streaming zip reader, written for validation rather than
//! extraction.
//!
//! It reads the upload strictly forward (no `Seek`), so it can validate
//! while the bytes arrive: local headers in order, each entry inflated and
//! measured ([`entry`], [`walker`]; small entries in one shot, [`fast`]), then the central directory and end
//! records, cross-checked against what was really seen ([`central`]).

pub(crate) mod central;
pub(crate) mod entry;
pub(crate) mod fast;
pub(crate) mod input;
pub(crate) mod names;
pub(crate) mod records;
pub(crate) mod walker;
