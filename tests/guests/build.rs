//! Compiles every guest crate below this folder into a component and
//! generates one path constant per guest (`BAD_ADAPTER` for
//! `bad-adapter/`), so a guest nobody tests is noticed.

use std::env;
use std::fmt::Write as _;
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
    let mut code = String::new();
    for (name, _) in &guests {
        let constant = name.to_uppercase().replace('-', "_");
        let path = out.join(format!("{name}.wasm"));
        writeln!(code, "/// The `{name}` guest component.").unwrap();
        writeln!(
            code,
            "pub const {constant}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(dest, code).unwrap();
}
