//! Used by build scripts to compile workspace crates into WebAssembly
//! components (`wasm32-wasip2`) with the workspace's `wasm` profile.
//!
//! The inner `cargo` gets its own target directory so it never waits on the
//! outer build's lock, and none of the outer build's settings (flags,
//! wrappers such as clippy's). On machines where rustup installs nothing by
//! itself, the target is added first (a no-op when present).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace's target directory, as the outer build sees it.
pub fn target_root(workspace: &Path) -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace.join(p)
            }
        })
        .unwrap_or_else(|| workspace.join("target"))
}

/// Builds `packages` (name, package) for `wasm32-wasip2` and copies each to
/// `out_dir/<name>.wasm` atomically (a watcher never sees half a file; an
/// unchanged file is left alone). Panics with the build's output on failure.
pub fn build_components(workspace: &Path, packages: &[(String, String)], out_dir: &Path) {
    if packages.is_empty() {
        return;
    }
    add_wasm_target();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let wasm_target_dir = target_root(workspace).join("wasm-build");
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&wasm_target_dir);
    for (_, package) in packages {
        cmd.args(["-p", package]);
    }
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
        .unwrap_or_else(|e| panic!("running {cargo} to build wasm components: {e}"));
    assert!(
        status.success(),
        "building the wasm components failed (see the output above)"
    );
    fs::create_dir_all(out_dir).unwrap();
    for (name, package) in packages {
        let built = wasm_target_dir
            .join("wasm32-wasip2/wasm")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let bytes = fs::read(&built).unwrap_or_else(|e| panic!("reading {}: {e}", built.display()));
        install(&bytes, out_dir, name);
    }
}

/// Writes `out_dir/<name>.wasm` atomically, leaving an unchanged file alone.
fn install(bytes: &[u8], out_dir: &Path, name: &str) {
    let dest = out_dir.join(format!("{name}.wasm"));
    if fs::read(&dest).ok().as_deref() == Some(bytes) {
        return;
    }
    let tmp = out_dir.join(format!(".{name}.wasm.tmp"));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, &dest).unwrap();
}

/// Rust source declaring one `&str` constant per component, named after its
/// folder (`PIPEDRIVE_PY` for `pipedrive-py`), holding the path of
/// `out_dir/<name>.wasm`; `what` names them in the doc comments.
pub fn path_consts<'a>(
    names: impl IntoIterator<Item = &'a str>,
    out_dir: &Path,
    what: &str,
) -> String {
    let mut code = String::new();
    for name in names {
        let constant = name.to_uppercase().replace('-', "_");
        let path = out_dir.join(format!("{name}.wasm"));
        code.push_str(&format!(
            "/// The `{name}` {what} component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    code
}

/// Folders below `dir` holding an adapter in another language: a `build.sh`
/// and no `Cargo.toml`.
pub fn script_builds_in(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("build.sh").is_file() && !e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found
}

/// Runs `dir/<name>/build.sh OUT` for each name (each script installs its
/// own toolchain, from PyPI or npm, under `target/toolchains`) and installs
/// the result as `out_dir/<name>.wasm`. Panics naming the script on failure.
pub fn build_with_scripts(workspace: &Path, dir: &Path, names: &[String], out_dir: &Path) {
    fs::create_dir_all(out_dir).unwrap();
    let toolchains = target_root(workspace).join("toolchains");
    for name in names {
        let script = dir.join(name).join("build.sh");
        let built = out_dir.join(format!(".{name}.build.wasm"));
        let status = Command::new("bash")
            .arg(&script)
            .arg(&built)
            .env("LEADGATE_TOOLCHAINS", &toolchains)
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            status.success(),
            "{} failed (see its output above); it needs python3 with pip and PyPI, or node with npm and the npm registry",
            script.display()
        );
        let bytes = fs::read(&built).unwrap_or_else(|e| panic!("reading {}: {e}", built.display()));
        let _ = fs::remove_file(&built);
        install(&bytes, out_dir, name);
    }
}

/// `(folder name, package name)` of every crate in the folders below `dir`.
pub fn crates_in(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(text) = fs::read_to_string(entry.path().join("Cargo.toml")) else {
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
    if installed {
        return;
    }
    match Command::new("rustup")
        .args(["target", "add", "wasm32-wasip2"])
        .status()
    {
        Ok(s) if s.success() => {}
        other => println!(
            "cargo:warning=could not run `rustup target add wasm32-wasip2` ({other:?}); the wasm build needs that target"
        ),
    }
}
