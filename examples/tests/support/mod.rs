//! Helpers shared by the API's tests: the router in process, and the
//! server binary.

#![allow(dead_code)] // each test file uses its own part

pub mod api;
pub mod server;
pub mod webdriver;
