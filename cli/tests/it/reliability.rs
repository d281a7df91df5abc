use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Sandbox, pnpm_tree, text};

fn assert_store_clean(sandbox: &Sandbox) {
    let verify = sandbox.store_command(&["verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    assert!(text(&verify).contains(": 0 bad"), "{}", text(&verify));
}

#[test]
fn store_verify_finds_corruption_and_prune_removes_orphans() {
    let sandbox = Sandbox::new("graph");
    sandbox.install(&[]);
    assert_store_clean(&sandbox);
    let path = sandbox.store_command(&["path"]);
    assert_eq!(
        String::from_utf8_lossy(&path.stdout).trim(),
        sandbox.store().to_str().unwrap()
    );

    // Corrupt the CAS file behind cycle-b's index.js (through its hardlink in node_modules).
    let linked = sandbox
        .project()
        .join("node_modules/.pnpm/cycle-b@1.0.0/node_modules/cycle-b/index.js");
    std::fs::remove_file(&linked).ok();
    let cas_file = flowpm_store::Store::open(&sandbox.store())
        .unwrap()
        .cas()
        .file_path(&flowpm_store::FileHash::of(b"exports.b = 1;\n"), false);
    std::fs::write(&cas_file, b"tampered").unwrap();
    let verify = sandbox.store_command(&["verify"]);
    assert!(!verify.status.success());
    assert!(
        text(&verify).contains(&cas_file.display().to_string()),
        "{}",
        text(&verify)
    );
    let fixed = sandbox.store_command(&["verify", "--fix"]);
    assert!(fixed.status.success(), "{}", text(&fixed));
    assert!(
        text(&fixed).contains("1 entries removed from the index"),
        "{}",
        text(&fixed)
    );
    assert_store_clean(&sandbox);

    // The next install downloads that package again and the tree is whole.
    std::fs::remove_dir_all(sandbox.project().join("node_modules")).unwrap();
    let before = sandbox.registry.tarball_requests();
    sandbox.install(&[]);
    assert_eq!(sandbox.registry.tarball_requests(), before + 1);
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));

    // An unreferenced file is pruned; referenced ones stay.
    {
        let store = flowpm_store::Store::open(&sandbox.store()).unwrap();
        store
            .cas()
            .stage(b"nobody references me", false)
            .unwrap()
            .commit(store.cas())
            .unwrap();
    }
    let prune = sandbox.store_command(&["prune"]);
    assert!(prune.status.success(), "{}", text(&prune));
    // That one, and dup-entries' first `a.txt`, which its second entry shadows.
    assert!(
        text(&prune).contains("removed 2 unreferenced files"),
        "{}",
        text(&prune)
    );
    assert_store_clean(&sandbox);
    let status = sandbox.store_command(&["status"]);
    assert!(text(&status).contains("packages: 57"), "{}", text(&status));
}

#[test]
fn a_short_file_left_by_a_killed_writer_is_replaced_not_served() {
    let sandbox = Sandbox::new("graph");
    // A writer killed mid-write leaves a prefix of the content under the CAS name.
    let content = b"exports.b = 1;\n";
    let cas_file = flowpm_store::Store::open(&sandbox.store())
        .unwrap()
        .cas()
        .file_path(&flowpm_store::FileHash::of(content), false);
    // (Shard directories are made as they are first needed.)
    std::fs::create_dir_all(cas_file.parent().unwrap()).unwrap();
    std::fs::write(&cas_file, &content[..5]).unwrap();
    sandbox.install(&[]);
    assert_eq!(std::fs::read(&cas_file).unwrap(), content);
    let linked = sandbox
        .project()
        .join("node_modules/.pnpm/cycle-b@1.0.0/node_modules/cycle-b/index.js");
    assert_eq!(std::fs::read(linked).unwrap(), content);
    assert_store_clean(&sandbox);
}

#[test]
fn concurrent_installs_share_one_store() {
    let sandbox = Sandbox::new("graph");
    let others: Vec<Sandbox> = (0..3).map(|_| Sandbox::new("graph")).collect();
    // Four projects, one store (the first sandbox's), one registry each.
    let spawn = |project: &std::path::Path, registry: &str| {
        Command::new(env!("CARGO_BIN_EXE_flowpm"))
            .args(["install", "--frozen-lockfile", "--reporter", "silent"])
            .args([
                "--store-dir",
                sandbox.store().to_str().unwrap(),
                "--registry",
                registry,
            ])
            .current_dir(project)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children = vec![spawn(&sandbox.project(), &sandbox.registry.url())];
    children.extend(
        others
            .iter()
            .map(|other| spawn(&other.project(), &other.registry.url())),
    );
    // And two at once on the same project.
    children.push(spawn(&others[0].project(), &others[0].registry.url()));
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
    let expected = pnpm_tree("graph");
    assert_eq!(sandbox.manifest(), expected);
    for other in &others {
        assert_eq!(other.manifest(), expected);
    }
    assert_store_clean(&sandbox);
}

#[test]
fn a_killed_installs_temp_files_are_swept_and_no_others() {
    // What a SIGKILL between writing and renaming leaves (pid 99999999 never runs: pid_max is
    // at most 2^22), beside a live process's temp and user files that only look alike.
    let sandbox = Sandbox::new("graph");
    let project = sandbox.project();
    let modules = project.join("node_modules");
    std::fs::create_dir_all(modules.join(".pnpm")).unwrap();
    let live = format!(".pnpm-lock.yaml.flowpm-{}", std::process::id());
    let stale = [
        modules.join(".modules.yaml.flowpm-99999999"),
        modules.join(".pnpm/.lock.yaml.flowpm-99999999"),
        project.join(".pnpm-lock.yaml.flowpm-99999999"),
    ];
    let kept = [project.join(&live), project.join("notes.flowpm-99999999")];
    for path in stale.iter().chain(&kept) {
        std::fs::write(path, "partial").unwrap();
    }
    sandbox.install(&[]);
    for path in &stale {
        assert!(!path.exists(), "{} is left", path.display());
    }
    for path in &kept {
        assert!(path.exists(), "{} is removed", path.display());
        std::fs::remove_file(path).unwrap();
    }
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));

    // A workspace project's package.json temp (`add` run inside it, killed) goes too.
    let workspace = Sandbox::new("workspace");
    let member_temp = workspace
        .project()
        .join("packages/app/.package.json.flowpm-99999999");
    std::fs::write(&member_temp, "partial").unwrap();
    workspace.install(&[]);
    assert!(!member_temp.exists());
}

#[test]
fn kill_9_at_twenty_points_never_breaks_the_next_install() {
    // How long a cold install takes here, to spread the kill points over it.
    let probe = Sandbox::new("graph");
    let started = Instant::now();
    probe.install(&[]);
    let cold = started.elapsed();
    drop(probe);

    let sandbox = Sandbox::new("graph");
    let expected = pnpm_tree("graph");
    for point in 0..20u32 {
        if point % 2 == 0 {
            // Even points kill a cold install (fetch, write, index); odd ones a warm one (link).
            let _ = std::fs::remove_dir_all(sandbox.store());
        }
        let _ = std::fs::remove_dir_all(sandbox.project().join("node_modules"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowpm"))
            .args(["install", "--frozen-lockfile", "--reporter", "silent"])
            .args([
                "--store-dir",
                sandbox.store().to_str().unwrap(),
                "--registry",
                &sandbox.registry.url(),
            ])
            .current_dir(sandbox.project())
            .spawn()
            .unwrap();
        let delay = cold.mul_f64(f64::from(point / 2 + 1) / 11.0);
        std::thread::sleep(delay.min(Duration::from_secs(10)));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        sandbox.install(&[]);
        let tree = sandbox.manifest();
        assert!(
            tree == expected,
            "kill point {point} ({delay:?}): tree differs:\n{}",
            crate::common::diff(&expected, &tree)
        );
        assert_store_clean(&sandbox);
    }
}

/// A small tmpfs mounted for one test (needs root, as on the project's machines and CI).
struct Mount(tempfile::TempDir);

impl Mount {
    fn tmpfs(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.path().to_str()?,
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            eprintln!("cannot mount a tmpfs here (not root?): skipping");
            return None;
        }
        Some(Mount(dir))
    }

    fn path(&self) -> &std::path::Path {
        self.0.path()
    }

    fn remount_read_only(&self) -> bool {
        Command::new("mount")
            .args(["-o", "remount,ro", self.path().to_str().unwrap()])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Files under `dir`, not counting dotfiles (the store's `.shards-ready` marker).
fn walk_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| {
            if entry.path().is_dir() {
                walk_files(&entry.path())
            } else {
                1
            }
        })
        .sum()
}

fn install_into(sandbox: &Sandbox, store: &std::path::Path) -> std::process::Output {
    sandbox.install_with(store, &[])
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_partial_files() {
    // Room for the store's directories and a few dozen files, not for the 5,000-file package.
    let Some(mount) = Mount::tmpfs("2m") else {
        return;
    };
    let sandbox = Sandbox::new("graph");
    let store = mount.path().join("store");
    let output = install_into(&sandbox, &store);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(message.contains("No space left on device"), "{message}");
    assert!(
        message.contains(store.to_str().unwrap()),
        "the store path is named: {message}"
    );
    assert_eq!(
        message.matches("failed to write").count(),
        1,
        "said once: {message}"
    );
    let committed = walk_files(&store.join("v1/files"));
    assert!(
        committed > 0,
        "the disk filled up while writing files, not before"
    );
    assert_eq!(
        std::fs::read_dir(store.join("v1/tmp")).unwrap().count(),
        0,
        "no temp files left"
    );
    assert!(
        !sandbox
            .project()
            .join("node_modules/.pnpm/lock.yaml")
            .exists()
    );
    // Whatever did reach the store is whole.
    let report = flowpm_store::Store::open(&store).map(|s| s.verify(false));
    if let Ok(Ok(report)) = report {
        assert!(report.bad_files.is_empty(), "{:?}", report.bad_files);
    }
}

#[test]
fn a_read_only_store_is_a_clear_error() {
    let Some(mount) = Mount::tmpfs("64m") else {
        return;
    };
    let sandbox = Sandbox::new("graph");
    assert!(mount.remount_read_only());
    let store = mount.path().join("store");
    let output = install_into(&sandbox, &store);
    assert!(!output.status.success());
    let message = text(&output);
    assert!(message.contains("Read-only file system"), "{message}");
    assert!(message.contains(store.to_str().unwrap()), "{message}");
    assert!(
        !sandbox.project().join("node_modules").exists(),
        "nothing written to the project"
    );
}
