//! `.bin` shims, as pnpm 12 writes them: POSIX sh scripts (not symlinks) that set `NODE_PATH`
//! and exec the target with the interpreter named by its shebang.
//!
//! Which shims go where:
//! - `node_modules/.bin` (of the root and of each workspace project): the bins of the
//!   project's direct dependencies and of the peers resolved for them (pnpm 12 links `webpack`
//!   there for `react-server-dom-webpack`), and in the root those of publicly hoisted packages;
//! - `node_modules/.pnpm/node_modules/.bin`: the bins of privately hoisted packages;
//! - `.pnpm/<dir>/node_modules/<name>/node_modules/.bin`: the package's own bins and those of
//!   its dependencies.
//!
//! On a name clash: a package named like the command wins, else the smaller package name,
//! else the higher version (observed from pnpm 12).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::InstallError;
use crate::hoist::Hoisted;
use crate::link::{Layout, relative_path};
use crate::manifest::BinManifest;
use crate::plan::{DirectTarget, ROOT_IMPORTER, SnapshotPlan};

/// The fixed part of every shim, byte for byte as pnpm 12 writes it.
const SHIM_HEADER: &str = include_str!("shim_header.sh");

/// A command a package provides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinCommand {
    pub name: String,
    /// Path inside the package, validated.
    pub path: String,
}

/// Creates every shim of the layout. Returns warnings for bins that could not be linked.
pub fn link_bins(layout: &Layout<'_>, hoisted: &[Hoisted]) -> Result<Vec<String>, InstallError> {
    let plan = layout.plan;
    let mut warnings = Vec::new();
    let mut commands: HashMap<usize, Vec<BinCommand>> = HashMap::new();
    for (index, snapshot) in plan.snapshots.iter().enumerate() {
        if !snapshot.has_bin {
            continue;
        }
        let package_dir = layout.package_dir(snapshot);
        let found = read_bin_commands(&package_dir, &mut warnings);
        for command in &found {
            let target = package_dir.join(&command.path);
            if let Err(error) =
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
            {
                warnings.push(format!(
                    "{}: bin `{}` points to `{}`: {error}",
                    snapshot.dep_path, command.name, command.path
                ));
            }
        }
        if !found.is_empty() {
            commands.insert(index, found);
        }
    }
    for importer in layout.importers() {
        let bin_dir = layout.importer_modules_dir(importer).join(".bin");
        write_linked_bins(layout, importer, hoisted, &bin_dir, &mut warnings)?;
        if commands.is_empty() {
            continue;
        }
        let mut direct: Vec<usize> = plan
            .direct
            .iter()
            .filter(|d| d.importer == importer)
            .filter_map(|d| match d.target {
                DirectTarget::Snapshot(index) => Some(index),
                DirectTarget::Link(_) => None,
            })
            .collect();
        let peers: Vec<usize> = direct
            .iter()
            .flat_map(|&index| {
                let snapshot = &plan.snapshots[index];
                snapshot
                    .dependencies
                    .iter()
                    .filter(|(alias, _)| snapshot.peer_names.contains(alias))
                    .map(|(_, child)| *child)
            })
            .collect();
        direct.extend(peers);
        // Publicly hoisted packages sit in the root `node_modules` too; their commands come
        // after every command of the project's own dependencies (pnpm 12, observed).
        let public: Vec<usize> = match importer {
            ROOT_IMPORTER => hoisted
                .iter()
                .filter(|h| h.public)
                .map(|h| h.snapshot)
                .collect(),
            _ => Vec::new(),
        };
        write_bin_dir(layout, &bin_dir, [&direct, &public], &commands)?;
    }
    if commands.is_empty() {
        return Ok(warnings);
    }
    let hoisted: Vec<usize> = hoisted
        .iter()
        .filter(|h| !h.public)
        .map(|h| h.snapshot)
        .collect();
    write_bin_dir(
        layout,
        &layout.hoist_dir().join(".bin"),
        [&hoisted, &[]],
        &commands,
    )?;
    // Each package's own `.bin` (its bins and its dependencies'): independent directories,
    // written by a small pool since there are hundreds of them.
    let (jobs, job_receiver) = flowpm_pipeline::unbounded::<usize>();
    for index in 0..plan.snapshots.len() {
        let _ = jobs.send(index);
    }
    drop(jobs);
    let commands = &commands;
    flowpm_pipeline::run(&flowpm_pipeline::CancelToken::new(), |pipeline| {
        pipeline.spawn("bins", crate::capacity::BIN_THREADS, move |context| {
            while let Some(index) = context.recv(&job_receiver) {
                let snapshot = &plan.snapshots[index];
                let mut providers = vec![index];
                providers.extend(snapshot.dependencies.iter().map(|(_, child)| *child));
                let bin_dir = layout.package_dir(snapshot).join("node_modules/.bin");
                write_bin_dir(layout, &bin_dir, [&providers, &[]], commands)?;
            }
            Ok(())
        });
    })
    .map_err(|error| match error {
        flowpm_pipeline::PipelineError::Stage { error, .. } => error,
        other => InstallError::Internal(other.to_string()),
    })?;
    Ok(warnings)
}

/// Shims for the bins of the workspace projects `importer` depends on through `link:`, as
/// pnpm 12 writes them: the target is the project's own path, `NODE_PATH` is the hoist
/// directory alone, and the project's files are not made executable (they are the user's).
/// Written before the registry packages' shims of the same directory, which replace any of
/// the same name.
fn write_linked_bins(
    layout: &Layout<'_>,
    importer: &str,
    hoisted: &[Hoisted],
    bin_dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), InstallError> {
    let node_path = [layout.hoist_dir()];
    let root = crate::link::normalize(&layout.project_dir);
    let mut linked: Vec<PathBuf> = layout
        .plan
        .direct
        .iter()
        .filter(|d| d.importer == importer && matches!(d.target, DirectTarget::Link(_)))
        .map(|direct| layout.direct_target(direct))
        .collect();
    if importer == ROOT_IMPORTER {
        // Publicly hoisted workspace projects sit in the root `node_modules` too.
        let projects = crate::hoist::hoisted_projects(layout.plan, hoisted);
        linked.extend(
            projects
                .iter()
                .filter(|p| p.public)
                .map(|p| layout.importer_dir(p.id)),
        );
    }
    for project_dir in linked {
        for command in read_bin_commands(&project_dir, warnings) {
            let path = bin_dir.join(&command.name);
            std::fs::create_dir_all(bin_dir)
                .map_err(|e| InstallError::io("create directory", bin_dir, e))?;
            let shim = shim_text(
                bin_dir,
                &project_dir,
                &node_path,
                &command.path,
                Some(&root),
            );
            write_executable(&path, shim.as_bytes(), false)
                .map_err(|e| InstallError::io("write bin shim", &path, e))?;
        }
    }
    Ok(())
}

/// Writes one `.bin` directory for the commands of `providers` (created only if non-empty):
/// on a name clash within a tier the rule of [`prefer`] decides, and the first tier's commands
/// always win over the second's.
fn write_bin_dir(
    layout: &Layout<'_>,
    bin_dir: &Path,
    providers: [&[usize]; 2],
    commands: &HashMap<usize, Vec<BinCommand>>,
) -> Result<(), InstallError> {
    let snapshots = &layout.plan.snapshots;
    // Command name -> (tier, provider, command); tiers are visited in order, so a later one
    // only fills names the earlier ones left.
    let mut chosen: BTreeMap<&str, (usize, usize, &BinCommand)> = BTreeMap::new();
    for (tier, tier_providers) in providers.into_iter().enumerate() {
        for &provider in tier_providers {
            let Some(list) = commands.get(&provider) else {
                continue;
            };
            for command in list {
                let replace = match chosen.get(command.name.as_str()) {
                    None => true,
                    Some(&(chosen_tier, current, _)) => {
                        chosen_tier == tier
                            && prefer(&command.name, &snapshots[provider], &snapshots[current])
                                == Ordering::Greater
                    }
                };
                if replace {
                    chosen.insert(&command.name, (tier, provider, command));
                }
            }
        }
    }
    if chosen.is_empty() {
        return Ok(());
    }
    // A directory made here is empty: its shims need no check for an earlier version.
    let fresh = match std::fs::create_dir(bin_dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(_) => {
            std::fs::create_dir_all(bin_dir)
                .map_err(|e| InstallError::io("create directory", bin_dir, e))?;
            true
        }
    };
    for (name, (_, provider, command)) in chosen {
        let snapshot = &snapshots[provider];
        let package_dir = layout.package_dir(snapshot);
        let node_path = [
            package_dir.join("node_modules"),
            layout.snapshot_modules_dir(snapshot),
            layout.hoist_dir(),
        ];
        let shim = shim_text(bin_dir, &package_dir, &node_path, &command.path, None);
        let path = bin_dir.join(name);
        write_executable(&path, shim.as_bytes(), fresh)
            .map_err(|e| InstallError::io("write bin shim", &path, e))?;
    }
    Ok(())
}

/// Which of two packages providing `command` gets it: `Greater` means `candidate`.
fn prefer(command: &str, candidate: &SnapshotPlan, current: &SnapshotPlan) -> Ordering {
    let owns = |s: &SnapshotPlan| s.name == command;
    match (owns(candidate), owns(current)) {
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    if candidate.name != current.name {
        // The smaller name wins.
        return current.name.cmp(&candidate.name);
    }
    match (
        nodejs_semver::Version::parse(&candidate.version),
        nodejs_semver::Version::parse(&current.version),
    ) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => Ordering::Less,
    }
}

fn write_executable(path: &Path, content: &[u8], fresh_dir: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !fresh_dir {
        if std::fs::read(path).is_ok_and(|existing| existing == content) {
            return Ok(());
        }
        let _ = std::fs::remove_file(path);
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(path)?;
    std::io::Write::write_all(&mut file, content)?;
    // The umask may have removed bits from 0o755.
    file.set_permissions(std::fs::Permissions::from_mode(0o755))
}

/// Reads a package's commands from its `package.json` (`bin`, else `directories.bin`).
pub fn read_bin_commands(package_dir: &Path, warnings: &mut Vec<String>) -> Vec<BinCommand> {
    let manifest_path = package_dir.join("package.json");
    let manifest: BinManifest =
        match std::fs::read(&manifest_path).map(|bytes| serde_json::from_slice(&bytes)) {
            Ok(Ok(manifest)) => manifest,
            Ok(Err(error)) => {
                warnings.push(format!(
                    "`{}` is not valid JSON: {error}",
                    manifest_path.display()
                ));
                return Vec::new();
            }
            Err(_) => return Vec::new(),
        };
    let mut commands = Vec::new();
    match &manifest.bin {
        Some(serde_json::Value::String(path)) => {
            if let Some(name) = &manifest.name {
                let name = name.rsplit('/').next().unwrap_or(name);
                commands.push((name.to_owned(), path.clone()));
            }
        }
        Some(serde_json::Value::Object(map)) => {
            for (name, path) in map {
                if let serde_json::Value::String(path) = path {
                    commands.push((name.clone(), path.clone()));
                }
            }
        }
        _ => {
            if let Some(dir) = manifest.directories.as_ref().and_then(|d| d.bin.as_ref()) {
                commands.extend(directory_commands(package_dir, dir));
            }
        }
    }
    commands
        .into_iter()
        .filter_map(|(name, path)| {
            // A command name is a file name in .bin: pnpm keeps only the last path segment.
            let name = name.rsplit('/').next().unwrap_or(&name).to_owned();
            let path = clean_relative(&path)?;
            let valid = !name.is_empty() && name != "." && name != ".." && !name.contains('\\');
            (valid && package_dir.join(&path).is_file()).then_some(BinCommand { name, path })
        })
        .collect()
}

/// Every file under `directories.bin`, named by its file name.
fn directory_commands(package_dir: &Path, dir: &str) -> Vec<(String, String)> {
    let Some(dir) = clean_relative(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::from(&dir)];
    while let Some(relative) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(package_dir.join(&relative)) else {
            continue;
        };
        for entry in entries.flatten() {
            let relative = relative.join(entry.file_name());
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(relative),
                Ok(kind) if kind.is_file() => {
                    if let (Some(name), Some(path)) =
                        (entry.file_name().to_str(), relative.to_str())
                    {
                        found.push((name.to_owned(), path.to_owned()));
                    }
                }
                _ => {}
            }
        }
    }
    found.sort();
    found
}

/// A package-relative path without `.`/`..`/leading `/`; `None` if it would escape.
fn clean_relative(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return None,
            _ => parts.push(part),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The full shim for the command at `package_dir/target` placed in `bin_dir`. With
/// `workspace_root` (the normalized root, for a linked project's bins), a target outside it is
/// named by its absolute path on the comment line, as pnpm 12 does (the commands themselves
/// stay relative).
pub fn shim_text(
    bin_dir: &Path,
    package_dir: &Path,
    node_path: &[PathBuf],
    target: &str,
    workspace_root: Option<&Path>,
) -> String {
    let target_path = package_dir.join(target);
    let relative_target = relative_path(bin_dir, &target_path).display().to_string();
    let node_path = node_path
        .iter()
        .map(|dir| {
            format!(
                "\"$basedir_abs\"/'{}'",
                relative_path(bin_dir, dir).display()
            )
        })
        .collect::<Vec<_>>()
        .join(":");
    let mut shim = String::with_capacity(SHIM_HEADER.len() + 2048);
    shim.push_str(SHIM_HEADER);
    shim.push_str(&format!(
        "if [ -z \"$NODE_PATH\" ]; then\n  export NODE_PATH={node_path}\nelse\n  export NODE_PATH={node_path}:\"$NODE_PATH\"\nfi\n"
    ));
    match interpreter(&target_path) {
        Some((program, arguments)) => {
            let arguments = if arguments.is_empty() {
                String::new()
            } else {
                format!("{arguments} ")
            };
            let t = &relative_target;
            shim.push_str(&format!(
                "if [ -n \"$exe\" ] && [ -x \"$basedir/{program}.exe\" ]; then\n  exec \"$basedir/{program}.exe\"  {arguments}\"$basedir_win\"/'{t}' \"$@\"\n\
                 elif [ -x \"$basedir/{program}\" ]; then\n  exec \"$basedir/{program}\"  {arguments}\"$basedir_abs\"/'{t}' \"$@\"\n\
                 elif [ -n \"$msys\" ] && command -v {program} >/dev/null 2>&1; then\n  exec {program}  {arguments}\"$basedir_win\"/'{t}' \"$@\"\n\
                 elif command -v {program} >/dev/null 2>&1; then\n  exec {program}  {arguments}\"$basedir_abs\"/'{t}' \"$@\"\n\
                 elif [ -n \"$exe\" ] && command -v {program}.exe >/dev/null 2>&1; then\n  exec {program}.exe  {arguments}\"$basedir_win\"/'{t}' \"$@\"\n\
                 else\n  exec {program}  {arguments}\"$basedir_abs\"/'{t}' \"$@\"\nfi\n"
            ));
        }
        None => {
            shim.push_str(&format!(
                "exec \"$basedir_abs\"/'{relative_target}'  \"$@\"\nexit $?\n"
            ));
        }
    }
    let outside = workspace_root.and_then(|root| {
        let absolute = crate::link::normalize(&target_path);
        (!absolute.starts_with(root)).then(|| absolute.display().to_string())
    });
    let comment_target = outside.unwrap_or(relative_target);
    shim.push_str(&format!("# cmd-shim-target={comment_target}\n"));
    shim
}

/// The interpreter and its arguments from the target's shebang, else from its extension;
/// `None` runs the file directly.
fn interpreter(target: &Path) -> Option<(String, String)> {
    let mut head = [0u8; 512];
    let read = std::fs::File::open(target)
        .and_then(|mut file| file.read(&mut head))
        .unwrap_or(0);
    let first_line = head[..read].split(|&b| b == b'\n').next().unwrap_or(&[]);
    let first_line = String::from_utf8_lossy(first_line);
    if let Some(shebang) = first_line.strip_prefix("#!") {
        let mut words = shebang.split_whitespace().peekable();
        let mut program = words.next()?;
        if program == "/usr/bin/env" {
            if words.peek() == Some(&"-S") {
                words.next();
            }
            // Skip `VAR=value` assignments before the program.
            while words.peek().is_some_and(|w| w.contains('=')) {
                words.next();
            }
            program = words.next()?;
        }
        let arguments: Vec<&str> = words.collect();
        return Some((program.to_owned(), arguments.join(" ")));
    }
    let extension = target.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension {
        "js" | "cjs" | "mjs" => Some(("node".to_owned(), String::new())),
        "sh" => Some(("sh".to_owned(), String::new())),
        "ps1" => Some(("pwsh".to_owned(), String::new())),
        _ => None,
    }
}
