//! Git dependencies (`git+https://host/repo.git#v1.2.0`, `git+ssh://`, `git+file://`, `git://`,
//! `ssh://`), resolved and fetched as pnpm 12 does (fixtures/projects/RESOLVE-ORACLE.md §14):
//! the ref is resolved to a commit with `git ls-remote`, the lockfile records
//! `resolution: {commit, repo, type: git}`, and the package's files are what `npm pack` takes
//! from a clone checked out at that commit. A commit never changes, so those files are stored
//! and indexed like a tarball's.
//!
//! Hosted shorthands (`github:user/repo`, `user/repo`) and URLs on github.com, gitlab.com or
//! bitbucket.org are not handled here: pnpm picks a codeload tarball or git for them
//! depending on whether the repository answers anonymous HTTP, which this module does not
//! probe yet.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use nodejs_semver::{Range, Version};

/// A package in a git repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GitSource {
    /// What `git clone` is given (the specifier's URL without `git+` and without its `#`).
    pub repo: String,
    /// The full commit hash.
    pub commit: String,
    /// The package's directory inside the repository (`#path:packages/foo`).
    pub path: Option<String>,
}

impl GitSource {
    /// pnpm's package id (the depPath version): `git+<repo as a URL>#<commit>[&path:<dir>]`.
    pub fn id(&self) -> String {
        let repo = scp_to_ssh(&self.repo);
        let mut id = if repo.contains("://") {
            repo
        } else {
            format!("https://{repo}")
        };
        if !id.starts_with("git+") {
            id.insert_str(0, "git+");
        }
        id.push('#');
        id.push_str(&self.commit);
        if let Some(path) = &self.path {
            id.push_str("&path:");
            id.push_str(path);
        }
        id
    }

    /// The store index key of its files.
    pub fn index_key(&self) -> String {
        format!("git:{}", self.id())
    }

    /// Refuses what must not reach `git` or the filesystem from a lockfile: a commit that is
    /// not a full hash (a branch name would be cached as if it never moved), a repository
    /// that `git` would take for an option, a `path` leaving the checkout.
    pub fn validate(&self) -> Result<(), String> {
        let full_hash = matches!(self.commit.len(), 40 | 64)
            && self
                .commit
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !full_hash {
            return Err(format!("`{}` is not a full commit hash", self.commit));
        }
        check_repo(&self.repo)?;
        self.path.as_deref().map_or(Ok(()), check_path)
    }
}

fn check_repo(repo: &str) -> Result<(), String> {
    if repo.starts_with('-') || repo.is_empty() {
        return Err(format!("`{repo}` is not a repository URL"));
    }
    Ok(())
}

/// A `path:` must name a directory inside the repository.
fn check_path(path: &str) -> Result<(), String> {
    let inside = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path.split('/').all(|part| part != "..");
    if !inside {
        return Err(format!(
            "`path:{path}` must be a relative path inside the repository"
        ));
    }
    Ok(())
}

/// `user@host:path` (scp-like) as `ssh://user@host/path`.
fn scp_to_ssh(repo: &str) -> String {
    if !repo.contains("://")
        && let Some((user_host, path)) = repo.split_once(':')
        && user_host.contains('@')
        && !user_host.contains(char::is_whitespace)
        && !path.is_empty()
    {
        return format!("ssh://{user_host}/{path}");
    }
    repo.to_owned()
}

/// A git specifier, parsed: where to clone from and what to check out.
#[derive(Debug, PartialEq, Eq)]
pub struct GitSpec {
    pub repo: String,
    /// A branch, tag or (possibly short) commit; `None` is the remote's `HEAD`.
    pub committish: Option<String>,
    /// `#semver:<range>`: the highest version tag in range.
    pub range: Option<String>,
    pub path: Option<String>,
}

const PROTOCOLS: [&str; 8] = [
    "git",
    "git+http",
    "git+https",
    "git+rsync",
    "git+ftp",
    "git+file",
    "git+ssh",
    "ssh",
];
const HOSTS: [&str; 3] = ["github.com", "gitlab.com", "bitbucket.org"];

/// Whether `specifier` is a git dependency this module resolves; `Some(Err)` for a git form
/// it does not handle yet.
pub fn parse(specifier: &str) -> Option<Result<GitSpec, String>> {
    if let Some(hosted) = hosted_shorthand(specifier) {
        return Some(Err(format!(
            "`{hosted}` git shorthands are not supported yet; use a git URL such as \
             `git+https://<host>/<user>/<repo>.git#<ref>`"
        )));
    }
    let (protocol, _) = specifier.split_once(':')?;
    if !PROTOCOLS.contains(&protocol.to_ascii_lowercase().as_str()) {
        return None;
    }
    Some(parse_url(specifier))
}

fn parse_url(specifier: &str) -> Result<GitSpec, String> {
    let (url, fragment) = match specifier.split_once('#') {
        Some((url, fragment)) => (url, fragment),
        None => (specifier, ""),
    };
    let url = match url.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("git+") => &url[4..],
        _ => url,
    };
    let repo = correct_scp(url);
    check_repo(&repo)?;
    if let Some(host) = HOSTS.iter().find(|host| url_host(&repo) == Some(**host)) {
        return Err(format!(
            "git dependencies on {host} are not supported yet (pnpm fetches public ones as \
             codeload tarballs)"
        ));
    }
    let mut spec = GitSpec {
        repo,
        committish: None,
        range: None,
        path: None,
    };
    // Split before decoding: an escaped `&` belongs to its parameter.
    for param in fragment.split('&').filter(|param| !param.is_empty()) {
        let param = percent_decode(param);
        if let Some(range) = param.strip_prefix("semver:") {
            Range::parse(range).map_err(|_| format!("`semver:{range}` is not a valid range"))?;
            spec.range = Some(range.to_owned());
        } else if let Some(path) = param.strip_prefix("path:") {
            check_path(path)?;
            spec.path = Some(path.to_owned());
        } else if param.starts_with('-') {
            return Err(format!("`{param}` is not a git ref"));
        } else {
            spec.committish = Some(param);
        }
    }
    Ok(spec)
}

/// `github:u/r`, `gitlab:`, `bitbucket:`, `gist:` and the bare `user/repo` form npm reads as
/// GitHub: the name of the form, for the error.
fn hosted_shorthand(specifier: &str) -> Option<&'static str> {
    for prefix in ["github:", "gitlab:", "bitbucket:", "gist:"] {
        if specifier.starts_with(prefix) {
            return Some(prefix);
        }
    }
    let path = specifier.split('#').next()?;
    let (user, repo) = path.split_once('/')?;
    let plain = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (plain(user) && plain(repo) && !user.starts_with('.') && !user.starts_with('@'))
        .then_some("user/repo")
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    Some(host.split(':').next().unwrap_or(host))
}

/// `ssh://git@host:user/repo` (an scp path after `ssh://`) as `ssh://git@host/user/repo`.
fn correct_scp(url: &str) -> String {
    let Some(rest) = url
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("ssh://"))
        .map(|_| &url[6..])
    else {
        return url.to_owned();
    };
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, Some(path)),
        None => (rest, None),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let port = host
        .rsplit_once(':')
        .is_some_and(|(_, after)| !after.is_empty() && after.bytes().all(|b| b.is_ascii_digit()));
    if !host.contains(':') || port {
        return url.to_owned();
    }
    let (before, last) = authority.rsplit_once(':').unwrap_or((authority, ""));
    let path = path.map(|path| format!("/{path}")).unwrap_or_default();
    format!("{}{before}/{last}{path}", &url[..6])
}

/// `scheme://user:secret@host` as `scheme://user:***@host`, for messages.
pub(crate) fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // Over http(s) a user alone is a token (`https://<token>@host`); over ssh it is the
        // account (`git@`).
        let http = before.ends_with("http://") || before.ends_with("https://");
        let authority_end = after
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                out.push_str(&format!("{user}:***@{host}"));
            }
            Some((_, host)) if http => out.push_str(&format!("***@{host}")),
            _ => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(high), Some(low)) = (
                bytes.get(i + 1).and_then(|&b| hex(b)),
                bytes.get(i + 2).and_then(|&b| hex(b)),
            )
        {
            out.push((high * 16 + low) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The commit `spec` names, from `git ls-remote` (pnpm's rules: an exact ref, then
/// `refs/<ref>`, a peeled tag, a tag, a branch, then a unique commit prefix; `semver:` takes
/// the highest `v?X.Y.Z` tag in range).
pub fn resolve_commit(spec: &GitSpec) -> Result<String, String> {
    let reference = spec.committish.as_deref().unwrap_or("HEAD");
    let commit_like = reference.len() >= 7
        && reference.len() <= 40
        && reference
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if spec.range.is_none() && commit_like && reference.len() == 40 {
        return Ok(reference.to_owned());
    }
    let mut args = vec!["ls-remote".to_owned(), "--".to_owned(), spec.repo.clone()];
    if spec.range.is_none() && !commit_like {
        args.push(reference.to_owned());
        args.push(format!("{reference}^{{}}"));
    }
    let listing = run_git(&args, None)?;
    let refs: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| {
            let (commit, name) = line.split_once('\t')?;
            Some((name, commit))
        })
        .collect();
    let lookup = |name: &str| commit_of(&refs, name);
    if let Some(range) = &spec.range {
        return highest_tag(&refs, range).ok_or_else(|| {
            format!(
                "no version tag of {} satisfies `semver:{range}`",
                redact_credentials(&spec.repo)
            )
        });
    }
    let found = lookup(reference)
        .or_else(|| lookup(&format!("refs/{reference}")))
        .or_else(|| lookup(&format!("refs/tags/{reference}^{{}}")))
        .or_else(|| lookup(&format!("refs/tags/{reference}")))
        .or_else(|| lookup(&format!("refs/heads/{reference}")));
    if let Some(commit) = found {
        return Ok(commit);
    }
    if commit_like {
        let mut matching: Vec<&str> = refs
            .iter()
            .map(|(_, commit)| *commit)
            .filter(|commit| commit.starts_with(reference))
            .collect();
        matching.sort_unstable();
        matching.dedup();
        if let [commit] = matching[..] {
            return Ok(commit.to_owned());
        }
    }
    Err(format!(
        "cannot resolve `{reference}` to a commit of {}",
        redact_credentials(&spec.repo)
    ))
}

fn highest_tag(refs: &[(&str, &str)], range: &str) -> Option<String> {
    let range = Range::parse(range).ok()?;
    let mut best: Option<(Version, String)> = None;
    for (name, _) in refs {
        let Some(tag) = name.strip_prefix("refs/tags/") else {
            continue;
        };
        let tag = tag.strip_suffix("^{}").unwrap_or(tag);
        let Ok(version) = Version::parse(tag.strip_prefix('v').unwrap_or(tag)) else {
            continue;
        };
        if range.satisfies(&version) && best.as_ref().is_none_or(|(b, _)| version > *b) {
            best = Some((version, tag.to_owned()));
        }
    }
    let (_, tag) = best?;
    commit_of(refs, &format!("refs/tags/{tag}^{{}}"))
        .or_else(|| commit_of(refs, &format!("refs/tags/{tag}")))
}

/// The commit `ls-remote` listed for the ref `name`.
fn commit_of(refs: &[(&str, &str)], name: &str) -> Option<String> {
    refs.iter()
        .find(|(candidate, _)| *candidate == name)
        .map(|(_, commit)| (*commit).to_owned())
}

/// A clone checked out at one commit, in a temp directory removed on drop.
pub struct Checkout {
    dir: PathBuf,
    /// `dir`, canonical: what the package's files must stay inside.
    root: PathBuf,
    /// The package's directory: `dir`, or the source's `path` inside it.
    package_dir: PathBuf,
}

/// Checkouts are `.git-checkout-<n>.flowpm-<pid>` in the temp directory, so the sweep of a
/// killed process's leftovers ([`crate::replace::is_stale_temp`]) recognises them.
const CHECKOUT_PREFIX: &str = ".git-checkout-";

impl Checkout {
    /// Clones the source's repository (whole, as pnpm does: not every server serves a commit
    /// by hash) into a new directory of the system temp directory and checks out its commit,
    /// once the source is known safe to hand to git ([`GitSource::validate`]).
    pub fn new(source: &GitSource) -> Result<Self, String> {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        source.validate()?;
        let parent = std::env::temp_dir();
        SWEPT.call_once(|| sweep_stale_checkouts(&parent));
        let dir = create_private_dir(&parent)?;
        // Owns the directory from here on, so a failure below removes it too.
        let mut checkout = Checkout {
            root: dir.clone(),
            package_dir: dir.clone(),
            dir,
        };
        let target = checkout.dir.to_string_lossy().into_owned();
        run_git(
            &[
                "clone",
                "--quiet",
                "--no-checkout",
                "--",
                &source.repo,
                &target,
            ]
            .map(str::to_owned),
            None,
        )?;
        run_git(
            &["checkout", "--quiet", "--detach", &source.commit].map(str::to_owned),
            Some(&checkout.dir),
        )?;
        checkout.root = checkout.dir.canonicalize().map_err(|e| e.to_string())?;
        if let Some(path) = &source.path {
            // `path` has no `..` ([`check_path`]), but a symlink in the repository could
            // still lead it elsewhere.
            let dir = checkout.dir.join(path);
            let real = dir
                .canonicalize()
                .map_err(|error| format!("`path:{path}`: {error}"))?;
            if !real.starts_with(&checkout.root) {
                return Err(format!("`path:{path}` leads outside the repository"));
            }
            checkout.package_dir = dir;
        }
        Ok(checkout)
    }

    /// The checkout's canonical root: what the package's files must stay inside.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The package's directory: the checkout, or the source's `path` inside it.
    pub fn package_dir(&self) -> &Path {
        &self.package_dir
    }
}

/// A new directory only this user can enter, created here (never one someone else made
/// beforehand under the same name).
fn create_private_dir(parent: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let dir = parent.join(format!(
            "{CHECKOUT_PREFIX}{}.flowpm-{}",
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(format!("cannot create {}: {error}", dir.display())),
        }
    }
}

/// Removes checkouts that killed processes left in `parent` (best effort).
fn sweep_stale_checkouts(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(CHECKOUT_PREFIX) && crate::replace::is_stale_temp(name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Variables git exports to hooks that would point these commands at the user's own
/// repository (`flowpm install` run from a git hook).
const REPOSITORY_VARIABLES: [&str; 8] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// Runs `git` without a terminal prompt (a private repository fails instead of hanging) and
/// without the `ext::` transport (which runs a command named in the URL).
fn run_git(args: &[String], cwd: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new("git");
    command
        .args([
            "-c",
            "advice.detachedHead=false",
            "-c",
            "protocol.ext.allow=never",
        ])
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    for variable in REPOSITORY_VARIABLES {
        command.env_remove(variable);
    }
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let output = command
        .output()
        .map_err(|error| format!("cannot run git: {error}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "`git {}` failed: {}",
            redact_credentials(&args.join(" ")),
            redact_credentials(stderr.trim())
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(specifier: &str) -> GitSpec {
        parse(specifier).unwrap().unwrap()
    }

    #[test]
    fn specifiers_parse_as_pnpm_reads_them() {
        let parsed = spec("git+file:///srv/repo.git#v1.2.0");
        assert_eq!(parsed.repo, "file:///srv/repo.git");
        assert_eq!(parsed.committish.as_deref(), Some("v1.2.0"));
        let parsed = spec("git+https://git.example/r.git#semver:%5E1.0.0&path:packages/a");
        assert_eq!(parsed.repo, "https://git.example/r.git");
        assert_eq!(parsed.range.as_deref(), Some("^1.0.0"));
        assert_eq!(parsed.path.as_deref(), Some("packages/a"));
        assert_eq!(parsed.committish, None);
        assert_eq!(
            spec("git+ssh://git@git.example:team/r.git#main").repo,
            "ssh://git@git.example/team/r.git"
        );
        assert_eq!(
            spec("git+ssh://git@git.example:2222/team/r.git").repo,
            "ssh://git@git.example:2222/team/r.git"
        );
        assert_eq!(
            spec("git://git.example/r.git").repo,
            "git://git.example/r.git"
        );
        assert_eq!(
            spec("GIT+SSH://git@h.example/r.git").repo,
            "SSH://git@h.example/r.git"
        );
        // Parameters are split before decoding: an escaped `&` stays in its ref.
        assert_eq!(
            spec("git://h.example/r.git#a%26b&path:p")
                .committish
                .as_deref(),
            Some("a&b")
        );
        for refused in [
            "git://h.example/r.git#path:../x",
            "git://h.example/r.git#path:/etc",
            "git://h.example/r.git#path:a/../../x",
            "git://h.example/r.git#-oops",
            "git://h.example/r.git#semver:not a range",
        ] {
            assert!(parse(refused).unwrap().is_err(), "{refused}");
        }
        for not_git in [
            "^1.0.0",
            "npm:a@1",
            "file:../a",
            "https://x.example/a.tgz",
            "@s/a",
        ] {
            assert!(parse(not_git).is_none(), "{not_git}");
        }
        for hosted in [
            "github:u/r",
            "u/r#v1",
            "git+https://github.com/u/r.git",
            "git+ssh://git@github.com:u/r.git",
        ] {
            assert!(parse(hosted).unwrap().is_err(), "{hosted}");
        }
    }

    #[test]
    fn ids_are_pnpms() {
        let source = |repo: &str, path: Option<&str>| GitSource {
            repo: repo.to_owned(),
            commit: "abc".to_owned(),
            path: path.map(str::to_owned),
        };
        assert_eq!(
            source("file:///srv/repo.git", None).id(),
            "git+file:///srv/repo.git#abc"
        );
        assert_eq!(
            source("git@host.example:u/r.git", Some("p/a")).id(),
            "git+ssh://git@host.example/u/r.git#abc&path:p/a"
        );
        assert_eq!(
            source("git://host.example/r", None).id(),
            "git+git://host.example/r#abc"
        );
    }

    #[test]
    fn lockfile_sources_are_checked_before_git_sees_them() {
        let source = |repo: &str, commit: &str, path: Option<&str>| GitSource {
            repo: repo.to_owned(),
            commit: commit.to_owned(),
            path: path.map(str::to_owned),
        };
        let hash = "98b9968af46fdb6e9c9135a457671de301391a9e";
        assert!(
            source("file:///r.git", hash, Some("p/a"))
                .validate()
                .is_ok()
        );
        assert!(source("file:///r.git", "main", None).validate().is_err());
        assert!(
            source("file:///r.git", &hash[..10], None)
                .validate()
                .is_err()
        );
        assert!(source("--upload-pack=x", hash, None).validate().is_err());
        assert!(
            source("file:///r.git", hash, Some("../x"))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn credentials_are_not_printed() {
        assert_eq!(
            redact_credentials("ls-remote -- https://me:s3cret@h.example/r.git HEAD"),
            "ls-remote -- https://me:***@h.example/r.git HEAD"
        );
        assert_eq!(
            redact_credentials("clone ssh://git@h.example/r.git"),
            "clone ssh://git@h.example/r.git"
        );
        assert_eq!(
            redact_credentials("fatal: https://ghp_token@h.example/r.git not found"),
            "fatal: https://***@h.example/r.git not found"
        );
    }

    #[test]
    fn semver_ranges_take_the_highest_tag_preferring_peeled_ones() {
        let refs = [
            ("refs/heads/main", "m"),
            ("refs/tags/v1.0.0", "a"),
            ("refs/tags/v1.2.0", "tag-object"),
            ("refs/tags/v1.2.0^{}", "b"),
            ("refs/tags/2.0.0", "c"),
            ("refs/tags/not-a-version", "d"),
        ];
        assert_eq!(highest_tag(&refs, "^1.0.0").as_deref(), Some("b"));
        assert_eq!(highest_tag(&refs, ">=1").as_deref(), Some("c"));
        assert_eq!(highest_tag(&refs, "^3"), None);
    }
}
