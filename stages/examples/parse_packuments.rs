//! Times `Packument::parse` over every `index.json` under a mirror's www directory:
//! `cargo run --release -p flowpm-stages --example parse_packuments -- /tmp/flowpm-mirror-realworld/www`
use std::time::Instant;

fn main() {
    let root = std::env::args()
        .nth(1)
        .expect("a directory of <name>/index.json packuments");
    let mut files = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(root)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "index.json") {
                files.push(std::fs::read(&path).unwrap());
            }
        }
    }
    let bytes: usize = files.iter().map(Vec::len).sum();
    let started = Instant::now();
    let mut versions = 0;
    for body in &files {
        let packument = flowpm_stages::packument::Packument::parse(body.clone()).unwrap();
        versions += packument.versions.len();
    }
    let parse = started.elapsed();
    let started = Instant::now();
    let mut compressed = 0;
    for body in &files {
        compressed += zstd::bulk::compress(body, 1).unwrap().len();
    }
    let zstd = started.elapsed();
    println!(
        "{} packuments, {:.1} MB, {versions} versions: parse {:.0} ms ({:.0} MB/s); zstd-1 {:.0} ms -> {:.1} MB",
        files.len(),
        bytes as f64 / 1e6,
        parse.as_secs_f64() * 1e3,
        bytes as f64 / 1e6 / parse.as_secs_f64(),
        zstd.as_secs_f64() * 1e3,
        compressed as f64 / 1e6
    );
}
