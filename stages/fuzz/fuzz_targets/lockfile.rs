//! The lockfile parser and planner on arbitrary text: errors are fine, panics and hangs are not.
//! The fast reader may decline text, never read it otherwise than serde-saphyr does.
#![no_main]

use flowpm_stages::lockfile::Lockfile;
use flowpm_stages::lockfile_read;
use flowpm_stages::plan::{PlanOptions, plan};
use flowpm_stages::platform::Platform;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(fast) = lockfile_read::parse::<Lockfile>(text) {
        let yaml = Lockfile::parse_yaml(text, std::path::Path::new("pnpm-lock.yaml"));
        let yaml = yaml.unwrap_or_else(|e| panic!("the fast reader accepted what serde-saphyr refuses: {e}"));
        assert_eq!(format!("{fast:?}"), format!("{yaml:?}"), "the two readers disagree");
    }
    let Ok(lockfile) = Lockfile::parse(text, std::path::Path::new("pnpm-lock.yaml")) else { return };
    let options = PlanOptions {
        production_only: false,
        platform: Platform { os: "linux".into(), cpu: "x64".into(), libc: Some("glibc".into()) },
        virtual_store_dir_max_length: 120,
        hoisting: Default::default(),
        patches: Default::default(),
    };
    if let Ok(plan) = plan(&lockfile, &options) {
        for snapshot in &plan.snapshots {
            // Every directory name the linker would create stays one path component.
            assert!(!snapshot.dir_name.contains('/') && snapshot.dir_name != ".." && snapshot.dir_name != ".");
        }
    }
});
