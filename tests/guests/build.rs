//! Compiles every guest crate below this folder into a component and
//! generates one path constant per guest (`BAD_ADAPTER` for
//! `bad-adapter/`), so a guest nobody tests is noticed.

use std::env;
use std::path::PathBuf;

fn main() {
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = here.join("../..").canonicalize().unwrap();
    for dir in ["tests/guests", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let guests = leadgate_wasm_build::crates_in(&here);
    let out = leadgate_wasm_build::target_root(&workspace).join("test-guests");
    leadgate_wasm_build::build_components(&workspace, &guests, &out);
    let code =
        leadgate_wasm_build::path_consts(guests.iter().map(|(n, _)| n.as_str()), &out, "guest");
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(dest, code).unwrap();
}
