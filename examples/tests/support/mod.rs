//! Helpers shared by the tests that run the server binary.

#![allow(dead_code)] // each test file uses its own part

pub mod server;
pub mod webdriver;
