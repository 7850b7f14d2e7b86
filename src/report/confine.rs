//! Where a script may write and read. A script shared by someone else must not be able to
//! damage the machine running it, so `save` and `plot` write only inside the run folder: a path
//! that leaves it (absolute, through `..`, or through a symbolic link) is refused, unless the
//! user allowed that folder with `--allow-write PATH`. Nor may it read what it likes and leak
//! it into its results (hermetic, as Starlark is): every file a script names (data, models,
//! tokenizers, adapters, `read`) must lie inside the run folder, the script's own folder, the
//! shared folder (`$BEB_SHARED`), the Hugging Face cache, or a folder allowed with
//! `--allow-read PATH`, checked on the path with `..` and links resolved. A refusal happens
//! before the file is opened, so it never tells anything of the file.

use std::path::{Component, Path, PathBuf};

use crate::error::{BebError, BebResult, ErrorKind};

/// The run record's own files in the run folder (record.rs writes them): a script that saved
/// over one would lose its results or its provenance when the run finishes.
pub const MANIFEST: &str = "manifest.yaml";
pub const RESULTS: &str = "results.yaml";

/// An absolute version of `path` with `.` and `..` resolved lexically (no file system access).
fn lexical_absolute(path: &Path) -> PathBuf {
    let base = if path.is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().unwrap_or_default()
    };
    let mut out = PathBuf::new();
    for c in base.join(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The physical location `path` refers to: the deepest existing ancestor resolved through
/// every symbolic link, followed by the components that do not exist yet.
fn physical(path: &Path) -> PathBuf {
    let absolute = lexical_absolute(path);
    let mut existing = absolute.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return absolute,
        }
    }
}

/// The file `name` (as a script wrote it) resolved for writing from the run folder `root`.
/// Returns the path to write and how to show it in the run record (relative to `root` when
/// inside it).
pub fn confined_path(name: &str, root: &Path, allowed: &[PathBuf]) -> BebResult<(PathBuf, String)> {
    let refuse = |why: String| {
        BebError::new(ErrorKind::Io, format!("refusing to write {name:?}: {why}")).with_help(
            "scripts write only inside their run folder; to let this script write elsewhere, run \
             it with `--allow-write FOLDER`",
        )
    };
    if name.is_empty() {
        return Err(BebError::new(ErrorKind::Io, "a file name is empty"));
    }
    let path = Path::new(name);
    if path.file_name().is_none() {
        return Err(refuse("it names a folder, not a file".into()));
    }
    let target = if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    };
    // The target's folder, physically; the file itself may be a link (renaming over it
    // replaces the link, never what it points to).
    let file_name = target.file_name().map(|n| n.to_os_string());
    let folder = physical(target.parent().unwrap_or(Path::new(".")));
    let real_root = physical(root);
    if folder.starts_with(&real_root) {
        let mut shown = folder
            .strip_prefix(&real_root)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        if let Some(f) = &file_name {
            shown.push(f);
        }
        let relative = shown.to_string_lossy().into_owned();
        if relative == MANIFEST || relative == RESULTS {
            return Err(BebError::new(
                ErrorKind::Io,
                format!("refusing to write {name:?}: the run record writes {relative} itself"),
            )
            .with_help("choose another name; manifest.yaml and results.yaml in the run folder are the run record's"));
        }
        return Ok((real_root.join(&shown), relative));
    }
    for allow in allowed {
        if folder.starts_with(physical(allow)) {
            let mut full = folder.clone();
            if let Some(f) = &file_name {
                full.push(f);
            }
            let shown = full.to_string_lossy().into_owned();
            return Ok((full, shown));
        }
    }
    // Say why: an absolute path, `..`, or a link.
    let lexical_inside = !path.is_absolute()
        && lexical_absolute(&target).starts_with(lexical_absolute(root))
        && !path.components().any(|c| c == Component::ParentDir);
    Err(refuse(if path.is_absolute() {
        "an absolute path is outside the run folder".into()
    } else if lexical_inside {
        "a symbolic link in the path leads outside the run folder".into()
    } else {
        "`..` leads outside the run folder".into()
    }))
}

/// The places a script may read, for messages.
const READABLE: &str = "the script's folder, the run folder, the shared folder ($BEB_SHARED) \
                        and the Hugging Face cache";

fn refuse_read(name: &str, why: &str) -> BebError {
    BebError::new(ErrorKind::Io, format!("refusing to read {name:?}: {why}")).with_help(format!(
        "scripts read only inside {READABLE}; to let this script read elsewhere, run it with \
         `--allow-read PATH` (a file or a folder; `allow_read:` in a study)"
    ))
}

/// Refuses `path` (the file a script named as `name`, relative to the current folder) unless
/// it lies inside one of `roots`, physically. Whether the file exists is not looked at, so a
/// refusal tells nothing about it.
pub fn check_readable(name: &str, path: &Path, roots: &[PathBuf]) -> BebResult<()> {
    let target = physical(path);
    if roots.iter().any(|root| target.starts_with(physical(root))) {
        return Ok(());
    }
    let why = if path.is_absolute() {
        format!("an absolute path outside {READABLE}")
    } else if path.components().any(|c| c == Component::ParentDir) {
        format!("`..` leads outside {READABLE}")
    } else {
        format!("it lies outside {READABLE}")
    };
    Err(refuse_read(name, &why))
}

/// The file `name` (as a script wrote it) resolved for reading, physically (`..` and symbolic
/// links resolved). A relative name is looked for in each of `roots` in turn (the run folder,
/// then the script's folder); it must lie inside one of them or of `allowed`. A refusal says
/// nothing about the file, not even whether it exists.
pub fn readable_path(name: &str, roots: &[PathBuf], allowed: &[PathBuf]) -> BebResult<PathBuf> {
    if name.is_empty() {
        return Err(BebError::new(ErrorKind::Io, "a file name is empty"));
    }
    let path = Path::new(name);
    let candidates: Vec<PathBuf> = if path.is_absolute() {
        vec![physical(path)]
    } else {
        roots.iter().map(|r| physical(&r.join(path))).collect()
    };
    let Some(first) = candidates.first() else {
        return Err(BebError::new(
            ErrorKind::Io,
            "there is no folder to read from",
        ));
    };
    let target = candidates
        .iter()
        .find(|c| c.is_file())
        .unwrap_or(first)
        .clone();
    let inside = roots
        .iter()
        .chain(allowed)
        .any(|root| target.starts_with(physical(root)));
    if !inside {
        let why = if path.is_absolute() {
            format!("an absolute path outside {READABLE}")
        } else if path.components().any(|c| c == Component::ParentDir) {
            format!("`..` leads outside {READABLE}")
        } else {
            format!("a symbolic link in the path leads outside {READABLE}")
        };
        return Err(refuse_read(name, &why));
    }
    if !target.is_file() {
        let looked: Vec<String> = candidates.iter().map(|c| c.display().to_string()).collect();
        return Err(BebError::new(
            ErrorKind::Io,
            format!(
                "there is no file {name:?} (looked for {})",
                looked.join(" and ")
            ),
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("beb-confine-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    #[test]
    fn relative_paths_stay_inside() {
        let root = scratch("inside");
        let ok = confined_path("sub/a.csv", &root, &[]).map(|(_, shown)| shown);
        assert_eq!(ok.ok().as_deref(), Some("sub/a.csv"));
        let ok = confined_path("sub/../b.csv", &root, &[]).map(|(_, shown)| shown);
        assert_eq!(ok.ok().as_deref(), Some("b.csv"));
        for bad in ["../x.csv", "a/../../x.csv", "/tmp/x.csv"] {
            let e = confined_path(bad, &root, &[]).err();
            assert!(
                e.as_ref()
                    .is_some_and(|e| e.message.starts_with("refusing to write")),
                "{bad}: {e:?}"
            );
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_folder_are_refused() {
        let root = scratch("links");
        let outside = scratch("links-outside");
        let _ = std::os::unix::fs::symlink(&outside, root.join("escape"));
        let e = confined_path("escape/x.csv", &root, &[]).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.message.contains("symbolic link")),
            "{e:?}"
        );
        // Allowed explicitly, it is fine.
        assert!(confined_path("escape/x.csv", &root, std::slice::from_ref(&outside)).is_ok());
        let absolute = outside.join("y.csv");
        let name = absolute.to_string_lossy().into_owned();
        assert!(confined_path(&name, &root, std::slice::from_ref(&outside)).is_ok());
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
    }

    #[cfg(unix)]
    #[test]
    fn reads_stay_inside_the_roots_unless_allowed() {
        let root = scratch("read-root");
        let outside = scratch("read-outside");
        let _ = std::fs::write(root.join("a.csv"), "x\n1\n");
        let _ = std::fs::write(outside.join("secret.csv"), "x\n2\n");
        let _ = std::os::unix::fs::symlink(outside.join("secret.csv"), root.join("link.csv"));
        let roots = [root.clone()];
        assert!(readable_path("a.csv", &roots, &[]).is_ok());
        let secret = outside.join("secret.csv").to_string_lossy().into_owned();
        let rel = format!(
            "../{}/secret.csv",
            outside
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        for (bad, why) in [
            (secret.as_str(), "absolute"),
            (rel.as_str(), "`..`"),
            ("link.csv", "symbolic link"),
        ] {
            let e = readable_path(bad, &roots, &[]).err();
            assert!(
                e.as_ref().is_some_and(|e| e.message.contains(why)),
                "{bad}: {e:?}"
            );
        }
        assert!(readable_path(&secret, &roots, std::slice::from_ref(&outside)).is_ok());
        assert!(readable_path("link.csv", &roots, std::slice::from_ref(&outside)).is_ok());
        let e = readable_path("missing.csv", &roots, &[]).err();
        assert!(
            e.as_ref().is_some_and(|e| e.message.contains("no file")),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_dir_all(&outside);
    }
}
