//! Dataset image paths: normalised, and kept inside the image root (lexically and through
//! symlinks).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Normalises a dataset image path: `/` separators, no `.` components. `None` when it is empty,
/// absolute, or has a `..` component (it could leave the image root).
pub fn clean_relative(path: &str) -> Option<String> {
    let unified = path.trim().replace('\\', "/");
    if unified.starts_with('/') {
        return None;
    }
    // A Windows drive (`C:`) is absolute too.
    let b = unified.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return None;
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(parts.join("/"))
}

pub(super) fn escape_error(file: &Path, location: &str, path: &str, root: &Path) -> Error {
    let why = if path.trim().is_empty() {
        "is empty".to_string()
    } else {
        format!("escapes the image root {}", root.display())
    };
    Error::parse(
        file,
        Some(location.to_string()),
        format!(
            "image path {path:?} {why}; refused: use a path relative to the image root without `..`"
        ),
    )
}

/// Where an existing image file actually lives, and whether that is inside the root.
pub(super) enum Resolved {
    Inside,
    Outside(PathBuf),
    Missing(String),
}

pub(super) fn resolve_in_root(root_canon: &Path, full: &Path) -> Resolved {
    match std::fs::canonicalize(full) {
        Ok(c) if !c.starts_with(root_canon) => Resolved::Outside(c),
        Ok(c) if c.is_dir() => {
            Resolved::Missing(format!("{} is a folder, not an image", full.display()))
        }
        Ok(_) => Resolved::Inside,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Resolved::Missing(format!("missing: {} not found", full.display()))
        }
        Err(e) => Resolved::Missing(format!("unreadable: {}: {e}", full.display())),
    }
}

/// Resolves a dataset image path under `root`, refusing any path that leaves it lexically
/// (`..`, absolute) or through a symlink. Used by loaders and by anything that opens a
/// dataset image later (the image store, the web server).
pub fn resolve_image(root: &Path, path: &str) -> Result<PathBuf> {
    let refuse = || Error::Image {
        path: PathBuf::from(path),
        message: format!("escapes the image root {}; refused", root.display()),
    };
    let clean = clean_relative(path).ok_or_else(refuse)?;
    let full = root.join(&clean);
    let root_canon = std::fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    match resolve_in_root(&root_canon, &full) {
        Resolved::Outside(_) => Err(refuse()),
        Resolved::Inside | Resolved::Missing(_) => Ok(full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_relative_paths() {
        assert_eq!(clean_relative("a/b.jpg").as_deref(), Some("a/b.jpg"));
        assert_eq!(clean_relative("./a//b.jpg").as_deref(), Some("a/b.jpg"));
        assert_eq!(clean_relative("a\\b.jpg").as_deref(), Some("a/b.jpg"));
        assert_eq!(clean_relative("../../etc/passwd"), None);
        assert_eq!(clean_relative("a/../../b"), None);
        assert_eq!(clean_relative("/etc/passwd"), None);
        assert_eq!(clean_relative("C:\\x.jpg"), None);
        assert_eq!(clean_relative(""), None);
        assert_eq!(clean_relative("."), None);
    }
}
