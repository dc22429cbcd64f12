//! Builds every adapter under `adapters/` that is written in another
//! language (a folder with a `build.sh` and no `Cargo.toml`) into
//! `target/plugins/<folder>.wasm`, beside the Rust adapters, and generates
//! one path constant per adapter (`PIPEDRIVE_PY` for `pipedrive-py/`).
//! The scripts install their toolchains (componentize-py from PyPI,
//! componentize-js from npm) under `target/toolchains` on first use.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = here.join("../..").canonicalize().unwrap();
    let adapters = workspace.join("adapters");
    let names = leadgate_wasm_build::script_builds_in(&adapters);
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    for name in &names {
        // Each adapter's own files only: not the whole adapters/ tree.
        for entry in std::fs::read_dir(adapters.join(name)).unwrap().flatten() {
            let path = entry.path();
            let skip = ["node_modules", "__pycache__", ".venv"]
                .iter()
                .any(|s| path.ends_with(s));
            if !skip {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let out = leadgate_wasm_build::target_root(&workspace).join("plugins");
    leadgate_wasm_build::build_with_scripts(&workspace, &adapters, &names, &out);
    let mut code =
        leadgate_wasm_build::path_consts(names.iter().map(String::as_str), &out, "adapter");
    writeln!(
        code,
        "/// The workspace root.\npub const WORKSPACE: &str = {:?};",
        workspace.display().to_string()
    )
    .unwrap();
    std::fs::write(
        PathBuf::from(env::var("OUT_DIR").unwrap()).join("polyglot.rs"),
        code,
    )
    .unwrap();
}
