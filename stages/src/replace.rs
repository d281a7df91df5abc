//! Replacing a file whole: written to `.<name>.flowpm-<pid>` beside it, then renamed over it,
//! so a reader sees the old file or the new one, never a part. A process killed between the two
//! leaves the temp file behind; the next install (holding the project lock) sweeps the temps of
//! processes that are gone.

use std::path::{Path, PathBuf};

use crate::error::InstallError;

/// The temp file that stands in for `path` while this process writes it.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    path.with_file_name(format!(".{name}{MARK}{}", std::process::id()))
}

const MARK: &str = ".flowpm-";

/// Writes `path` through its temp file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InstallError> {
    let temp = temp_path(path);
    std::fs::write(&temp, bytes).map_err(|e| InstallError::io("write", &temp, e))?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        InstallError::io("replace", path, e)
    })
}

/// Whether `name` is a temp file of [`temp_path`]'s making whose process no longer runs.
/// Another live process's temp is left alone: it may be about to rename it.
pub(crate) fn is_stale_temp(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(MARK))
        .filter(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(_, pid)| pid.parse::<i32>().ok())
    else {
        return false;
    };
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    pid != rustix::process::getpid()
        && rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
}

/// Removes the stale temp files directly in `dir` (best effort: a sweep that fails leaves
/// only an unused file).
pub(crate) fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(is_stale_temp) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temps_of_dead_processes_are_stale() {
        let ours = temp_path(Path::new("/p/pnpm-lock.yaml"));
        assert_eq!(
            ours,
            Path::new(&format!("/p/.pnpm-lock.yaml.flowpm-{}", std::process::id()))
        );
        let ours = ours.file_name().unwrap().to_str().unwrap();
        assert!(!is_stale_temp(ours), "this process's own temp");
        // pid_max is at most 2^22 on Linux, so this pid never runs.
        assert!(is_stale_temp(".modules.yaml.flowpm-99999999"));
        let parent = std::os::unix::process::parent_id();
        assert!(!is_stale_temp(&format!(".modules.yaml.flowpm-{parent}")));
        for name in [
            "modules.yaml.flowpm-99999999",
            ".modules.yaml.flowpm-",
            ".modules.yaml.flowpm-x",
            ".modules.yaml.flowpm--1",
            ".modules.yaml.flowpm-+5",
            ".modules.yaml",
            ".bin",
        ] {
            assert!(!is_stale_temp(name), "{name}");
        }
    }

    #[test]
    fn a_sweep_removes_stale_temps_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let keep = [".modules.yaml", ".bin", "a.flowpm-99999999", "pkg"];
        for name in keep {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::write(dir.path().join(".modules.yaml.flowpm-99999999"), "").unwrap();
        remove_stale_temps(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut keep = keep.map(String::from).to_vec();
        keep.sort();
        assert_eq!(left, keep);
    }
}
