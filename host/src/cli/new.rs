//! `leadgate new adapter NAME`: a working adapter crate from the template in
//! `sdk/template/adapter`, with native unit tests, ready to build into a
//! component.
//!
//! Inside the leadgate workspace (an `adapters/` folder beside a workspace
//! `Cargo.toml`) the crate becomes a workspace member, which the host's build
//! compiles into its plugin folder, and its mapping goes into `mappings/`.
//! Anywhere else it is a standalone crate depending on the SDK by path, with
//! the workspace's `Cargo.lock` so it builds with the versions leadgate was
//! tested with.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const CARGO_TOML: &str = include_str!("../../../sdk/template/adapter/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../../../sdk/template/adapter/src/lib.rs.tmpl");
const README: &str = include_str!("../../../sdk/template/adapter/README.md.tmpl");

const MAPPING: &str = "# leadgate → {{title}}. See mappings/hubspot.yaml for the syntax.
version: 1
crm: {{name}}
required: [email]
properties:
  email:
    from: email
  first_name:
    from: first_name
  last_name:
    from: last_name
  phone:
    from: phone
  company:
    from: company
";

/// What was written.
#[derive(Debug)]
pub struct Scaffolded {
    pub crate_dir: PathBuf,
    pub mapping: PathBuf,
    /// Whether the crate joined the leadgate workspace.
    pub in_workspace: bool,
}

/// `name` must be lowercase letters, digits and dashes, starting with a
/// letter: it names the crate, the component file and the adapter.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 48;
    if !ok {
        bail!(
            "adapter name {name:?}: use lowercase letters, digits and dashes, starting with a letter (for example acme-crm)"
        );
    }
    Ok(())
}

fn title(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

/// The leadgate workspace `dir` belongs to: a folder with a `[workspace]`
/// `Cargo.toml` and the SDK, at or above `dir`.
fn workspace_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| {
            d.join("sdk/Cargo.toml").is_file()
                && std::fs::read_to_string(d.join("Cargo.toml"))
                    .is_ok_and(|t| t.contains("[workspace]"))
        })
        .map(Path::to_path_buf)
}

/// Adds `member` to the workspace's `members` list (a no-op if present).
fn join_workspace(root: &Path, member: &str) -> anyhow::Result<()> {
    let path = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)?;
    let quoted = format!("\"{member}\"");
    if text.contains(&quoted) {
        return Ok(());
    }
    let start = text
        .find("members = [")
        .context("the workspace Cargo.toml has no `members = [` list")?;
    let end = start
        + text[start..]
            .find(']')
            .context("unterminated members list")?;
    let mut updated = text.clone();
    updated.insert_str(end, &format!("    {quoted},\n"));
    std::fs::write(&path, updated)?;
    Ok(())
}

/// Writes the adapter crate `name` into `dir` (default: `adapters/NAME`
/// inside a leadgate checkout, else `./NAME`). `sdk` overrides where the SDK
/// is for a standalone crate.
pub fn new_adapter(
    name: &str,
    dir: Option<&Path>,
    sdk: Option<&Path>,
) -> anyhow::Result<Scaffolded> {
    check_name(name)?;
    let cwd = std::env::current_dir()?;
    let crate_dir = match dir {
        Some(d) => cwd.join(d),
        None if cwd.join("adapters").is_dir() && workspace_of(&cwd).is_some() => {
            cwd.join("adapters").join(name)
        }
        None => cwd.join(name),
    };
    if crate_dir.exists() {
        bail!(
            "{} exists already; pick another name or --dir",
            crate_dir.display()
        );
    }
    let parent = crate_dir.parent().context("no parent folder")?;
    std::fs::create_dir_all(parent)?;
    let workspace = workspace_of(parent.canonicalize()?.as_path());
    let crate_name = format!("leadgate-adapter-{name}");
    let (sdk_dep, workspace_table) = match &workspace {
        Some(_) => ("{ workspace = true }".to_string(), String::new()),
        None => {
            let sdk = match sdk {
                Some(p) => cwd.join(p),
                None => Path::new(env!("LEADGATE_SOURCE_ROOT")).join("sdk"),
            };
            if !sdk.join("Cargo.toml").is_file() {
                bail!(
                    "the leadgate SDK is not at {}; pass --sdk PATH to a leadgate checkout's sdk/",
                    sdk.display()
                );
            }
            let sdk = sdk.canonicalize()?;
            (
                format!("{{ path = {:?} }}", sdk.display().to_string()),
                "\n# A crate of its own, not a member of an enclosing workspace.\n[workspace]\n"
                    .to_string(),
            )
        }
    };
    let title = title(name);
    let struct_name = title.replace(' ', "");
    let env_name = name.to_uppercase().replace('-', "_");
    let crate_file = crate_name.replace('-', "_");
    let vars = [
        ("name", name),
        ("crate", crate_name.as_str()),
        ("crate_file", crate_file.as_str()),
        ("title", title.as_str()),
        ("struct", struct_name.as_str()),
        ("env", env_name.as_str()),
        ("sdk_dep", sdk_dep.as_str()),
        ("workspace_table", workspace_table.as_str()),
    ];
    std::fs::create_dir_all(crate_dir.join("src"))?;
    std::fs::write(crate_dir.join("Cargo.toml"), render(CARGO_TOML, &vars))?;
    // `{{secret:NAME}}` in the template is the host's placeholder syntax,
    // not a template variable: render leaves unknown names alone.
    std::fs::write(crate_dir.join("src/lib.rs"), render(LIB_RS, &vars))?;
    std::fs::write(crate_dir.join("README.md"), render(README, &vars))?;
    let mapping = match &workspace {
        Some(root) => {
            let member = crate_dir
                .canonicalize()?
                .strip_prefix(root)
                .context("the crate is outside its workspace")?
                .display()
                .to_string();
            join_workspace(root, &member)?;
            root.join("mappings").join(format!("{name}.yaml"))
        }
        None => {
            let lock = Path::new(env!("LEADGATE_SOURCE_ROOT")).join("Cargo.lock");
            if lock.is_file() {
                std::fs::copy(&lock, crate_dir.join("Cargo.lock"))?;
            }
            crate_dir.join("mapping.yaml")
        }
    };
    if !mapping.exists() {
        std::fs::create_dir_all(mapping.parent().context("mapping folder")?)?;
        std::fs::write(&mapping, render(MAPPING, &vars))?;
    }
    Ok(Scaffolded {
        crate_dir,
        mapping,
        in_workspace: workspace.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_titles() {
        assert!(check_name("acme-crm").is_ok());
        for bad in ["Acme", "1crm", "acme_crm", "acme-", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(title("acme-crm"), "Acme Crm");
    }

    #[test]
    fn render_keeps_secret_placeholders() {
        let out = render("{{name}} Bearer {{secret:access-token}}", &[("name", "x")]);
        assert_eq!(out, "x Bearer {{secret:access-token}}");
    }

    #[test]
    fn joining_the_workspace_edits_members_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\n    \"host\",\n]\n",
        )
        .unwrap();
        join_workspace(dir.path(), "adapters/acme").unwrap();
        join_workspace(dir.path(), "adapters/acme").unwrap();
        let text = std::fs::read_to_string(dir.path().join("Cargo.toml")).unwrap();
        assert_eq!(text.matches("adapters/acme").count(), 1, "{text}");
        assert!(
            text.contains("\"host\",\n    \"adapters/acme\",\n]"),
            "{text}"
        );
    }
}
