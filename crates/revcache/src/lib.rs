//! The command line and the config file of the `revcache` binary, as a
//! library so the config parser can be fuzzed (`fuzz/`) and tested
//! without a process. `main.rs` runs them.

pub mod cli;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
