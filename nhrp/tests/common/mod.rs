//! Helpers shared by integration tests.
#![allow(dead_code)]
pub mod logs;
pub mod pcapread;
pub mod sim;
