//! Paths of the adapter components written in Python and JavaScript, built
//! by `build.rs` with their own languages' toolchains.

include!(concat!(env!("OUT_DIR"), "/polyglot.rs"));
