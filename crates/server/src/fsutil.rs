//! Durable file writes (temp file, fsync, rename, fsync the directory), private
//! directories, and the check that private files are not open to group or others.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `data` to `path` atomically with the given Unix `mode` (0o600 for secrets).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Creates `path` (and missing parents) with mode 0700; an existing directory is left
/// as it is (`loose_modes` reports it if it is open to others).
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Creates an empty file with mode 0600 unless `path` exists (so that a program creating
/// it later, such as SQLite, finds it private); true if it was created.
pub fn create_private_file(path: &Path) -> std::io::Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// A private file or directory that group or others may access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseMode {
    /// The file or directory.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
    /// The mode it should have (0600 for files, 0700 for directories).
    pub want: u32,
}

impl std::fmt::Display for LooseMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} has mode {:04o}: group or others may access it; run `chmod {:o} {}`",
            self.path.display(),
            self.mode,
            self.want,
            self.path.display()
        )
    }
}

/// Which of `paths` (each with the mode it should have) grant any permission to group or
/// others. Paths that do not exist are skipped.
pub fn loose_modes(paths: &[(PathBuf, u32)]) -> Vec<LooseMode> {
    paths
        .iter()
        .filter_map(|(path, want)| {
            let mode = fs::metadata(path).ok()?.permissions().mode() & 0o7777;
            (mode & 0o077 != 0).then(|| LooseMode {
                path: path.clone(),
                mode,
                want: *want,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_dirs_and_files_and_the_check_of_their_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        super::create_private_dir(&dir).unwrap();
        super::create_private_dir(&dir).unwrap();
        let file = dir.join("x.db");
        assert!(super::create_private_file(&file).unwrap());
        std::fs::write(&file, b"content").unwrap();
        assert!(!super::create_private_file(&file).unwrap(), "kept");
        assert_eq!(std::fs::read(&file).unwrap(), b"content");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        let paths = vec![
            (dir.clone(), 0o700),
            (file.clone(), 0o600),
            (dir.join("missing"), 0o600),
        ];
        assert!(super::loose_modes(&paths).is_empty());

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = super::loose_modes(&paths);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].mode, found[0].want), (0o755, 0o700));
        assert_eq!((found[1].mode, found[1].want), (0o640, 0o600));
        let text = found[1].to_string();
        assert!(text.contains("0640"), "{text}");
        assert!(
            text.contains(&format!("chmod 600 {}", file.display())),
            "{text}"
        );
    }

    #[test]
    fn secrets_are_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        super::write_atomic(&p, b"secret", 0o600).unwrap();
        super::write_atomic(&p, b"secret2", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret2");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
