//! Bad input gets a clear error naming the file, the package or line, and writes nothing.

use crate::common::{Sandbox, text};

fn fails_cleanly(sandbox: &Sandbox, expected: &[&str]) {
    let output = sandbox.flowpm(&["install", "--frozen-lockfile"]);
    assert!(!output.status.success(), "should have failed");
    let message = text(&output);
    for part in expected {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    assert!(
        !sandbox.project().join("node_modules").exists(),
        "nothing is written: {message}"
    );
}

fn edit(sandbox: &Sandbox, file: &str, change: impl FnOnce(String) -> String) {
    let path = sandbox.project().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, change(text)).unwrap();
}

#[test]
fn a_lockfile_syntax_error_names_file_and_line() {
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, "pnpm-lock.yaml", |text| {
        text.replacen("importers:", "importers: [", 1)
    });
    fails_cleanly(&sandbox, &["pnpm-lock.yaml", "line"]);
}

#[test]
fn another_lockfile_version_is_refused() {
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, "pnpm-lock.yaml", |text| {
        text.replacen("lockfileVersion: '9.0'", "lockfileVersion: '6.0'", 1)
    });
    fails_cleanly(
        &sandbox,
        &["pnpm-lock.yaml", "lockfileVersion 6.0", "version 9"],
    );
}

#[test]
fn a_missing_packages_entry_names_the_package_and_who_needs_it() {
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, "pnpm-lock.yaml", |text| {
        let start = text.find("\n  cycle-b@1.0.0:\n    resolution:").unwrap();
        let end = text[start + 1..].find("\n\n").unwrap() + start + 1;
        format!("{}{}", &text[..start], &text[end..])
    });
    fails_cleanly(
        &sandbox,
        &["cycle-b@1.0.0", "needed by cycle-a@1.0.0", "packages"],
    );
}

#[test]
fn a_package_name_with_path_tricks_is_refused_before_any_filesystem_call() {
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, "pnpm-lock.yaml", |text| {
        text.replace("      cycle-b: 1.0.0", "      ../../evil: cycle-b@1.0.0")
    });
    fails_cleanly(&sandbox, &["invalid package name `../../evil`"]);
}

#[test]
fn a_malformed_package_json_names_file_and_line() {
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, "package.json", |text| {
        text.replacen("\"private\": true,", "\"private\": true,,", 1)
    });
    fails_cleanly(&sandbox, &["package.json", "line 4"]);
}

#[test]
fn a_malformed_npmrc_names_file_and_line() {
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, ".npmrc", |_| {
        "fund=false\nthis line has no equals sign\n".to_owned()
    });
    fails_cleanly(&sandbox, &[".npmrc", "line 2"]);
}

#[test]
fn missing_integrity_is_allowed_with_a_warning() {
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, "pnpm-lock.yaml", |text| {
        let start = text
            .find("  cycle-b@1.0.0:\n    resolution: {integrity: ")
            .unwrap();
        let line_end = text[start..].find("}\n").unwrap() + start;
        let line_start = start + "  cycle-b@1.0.0:\n".len();
        format!(
            "{}    resolution: {{}}{}",
            &text[..line_start],
            &text[line_end + 1..]
        )
    });
    let output = sandbox.install(&[]);
    let message = text(&output);
    assert!(
        message.contains("warning: cycle-b@1.0.0: the lockfile has no integrity"),
        "{message}"
    );
    assert_eq!(sandbox.manifest(), crate::common::pnpm_tree("graph"));
}

#[test]
fn alias_cycles_terminate() {
    // cycle-b depends on cycle-a, which (through an alias) depends on itself and on cycle-b.
    let sandbox = Sandbox::new("graph");
    edit(&sandbox, "pnpm-lock.yaml", |text| {
        text.replace("  cycle-a@1.0.0:\n    dependencies:\n      cycle-b: 1.0.0\n", "  cycle-a@1.0.0:\n    dependencies:\n      cycle-b: 1.0.0\n      self-alias: cycle-a@1.0.0\n")
    });
    let output = sandbox.install(&[]);
    assert!(output.status.success(), "{}", text(&output));
    let link = sandbox
        .project()
        .join("node_modules/.pnpm/cycle-a@1.0.0/node_modules/self-alias");
    // Relative to the link's directory, as pnpm computes it: the package sits right beside it.
    assert_eq!(
        std::fs::read_link(link).unwrap(),
        std::path::Path::new("cycle-a")
    );
}
