//! Files and folders holding personal data or credentials are the
//! owner's alone: folders 0700, files 0600, and a file an older version
//! (or a copy by hand) left readable by others is narrowed with a warning.
//! The store's database and the generated admin token both use these.

use std::fs::File;
use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) as the owner's alone (0700); an
/// existing folder is left as it is.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates a new file only the owner can read and write (0600); fails if
/// it exists.
pub fn create_private(path: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Whether `path` exists and others may read or write it.
pub fn readable_by_others(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).map(|_| false)
    }
}

/// Narrows `what` (files that exist among `paths`; the first names it in
/// the warning) to 0600 when the first is readable by others.
pub fn narrow_to_owner(what: &str, paths: &[&Path]) -> io::Result<()> {
    let Some(first) = paths.first() else {
        return Ok(());
    };
    if !readable_by_others(first)? {
        return Ok(());
    }
    tracing::warn!(path = %first.display(), "{what} was readable by others; narrowed to 0600");
    #[cfg(unix)]
    for path in paths.iter().filter(|p| p.exists()) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
