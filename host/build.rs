//! Builds every Rust adapter under `adapters/` into a WebAssembly component
//! (`wasm32-wasip2`) and copies it to `target/plugins/<name>.wasm`, the
//! host's default plugin folder. No `.wasm` is ever committed.
//!
//! The inner `cargo` uses its own target directory so it never waits on the
//! outer build's lock. On machines where rustup installs nothing by itself,
//! the target is added here (a no-op when present).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let adapters_dir = workspace.join("adapters");
    for dir in ["adapters", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=LEADGATE_SKIP_ADAPTER_BUILD");

    let target_root = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace.join(p)
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    let plugins_out = target_root.join("plugins");
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

    let adapters = rust_adapters(&adapters_dir);
    if adapters.is_empty() {
        return;
    }
    add_wasm_target();

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let wasm_target_dir = target_root.join("wasm-build");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&wasm_target_dir);
    for (_, package) in &adapters {
        cmd.args(["-p", package]);
    }
    // The outer build's settings are not the guest's.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        // `cargo clippy` of the host must not lint (and fail) the guest build.
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {cargo} to build the adapters: {e}"));
    assert!(
        status.success(),
        "building the wasm adapters failed (see the output above)"
    );

    fs::create_dir_all(&plugins_out).unwrap();
    for (name, package) in &adapters {
        let built = wasm_target_dir
            .join("wasm32-wasip2/wasm")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = plugins_out.join(format!("{name}.wasm"));
        // Write beside, then rename: a running host watching this folder
        // never sees half a file.
        let tmp = plugins_out.join(format!(".{name}.wasm.tmp"));
        fs::copy(&built, &tmp)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), tmp.display()));
        if fs::read(&dest).ok() != fs::read(&tmp).ok() {
            fs::rename(&tmp, &dest).unwrap();
        } else {
            fs::remove_file(&tmp).unwrap();
        }
    }
}

/// `(folder name, package name)` of every Rust adapter.
fn rust_adapters(adapters_dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(adapters_dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        let package = text
            .lines()
            .skip_while(|l| l.trim() != "[package]")
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
            });
        if let Some(package) = package {
            found.push((entry.file_name().to_string_lossy().into_owned(), package));
        }
    }
    found.sort();
    found
}

fn add_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
        .unwrap_or(false);
    if !installed {
        let status = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => println!(
                "cargo:warning=could not run `rustup target add wasm32-wasip2` ({other:?}); the adapter build needs that target"
            ),
        }
    }
}
