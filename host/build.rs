//! Builds every Rust adapter under `adapters/` into a WebAssembly component
//! and copies it to `target/plugins/<name>.wasm`, the host's default plugin
//! folder. No `.wasm` is ever committed.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    // The workspace manifest holds the adapters' `wasm` profile.
    for dir in ["adapters", "sdk", "wit", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    // sqlx::migrate! embeds the migrations: a new one must rebuild the crate.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("migrations").display()
    );
    println!("cargo:rerun-if-env-changed=LEADGATE_SKIP_ADAPTER_BUILD");
    let plugins_out = leadgate_wasm_build::target_root(&workspace).join("plugins");
    println!(
        "cargo:rustc-env=LEADGATE_BUNDLED_PLUGINS={}",
        plugins_out.display()
    );
    println!(
        "cargo:rustc-env=LEADGATE_SOURCE_ROOT={}",
        workspace.display()
    );
    if env::var_os("LEADGATE_SKIP_ADAPTER_BUILD").is_some() {
        return;
    }
    let adapters = leadgate_wasm_build::crates_in(&workspace.join("adapters"));
    leadgate_wasm_build::build_components(&workspace, &adapters, &plugins_out);
}
