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
    let mut parsed = Vec::with_capacity(files.len());
    for body in &files {
        let packument = flowpm_stages::packument::Packument::parse(body).unwrap();
        versions += packument.versions.len();
        parsed.push(packument);
    }
    let parse = started.elapsed();
    // What the metadata cache compresses: the compact documents, at its level (-3).
    let kept: usize = parsed.iter().map(|p| p.body().len()).sum();
    let started = Instant::now();
    let mut compressed = 0;
    for packument in &parsed {
        compressed += zstd::bulk::compress(packument.body(), -3).unwrap().len();
    }
    let zstd = started.elapsed();
    // What reading them back from the cache costs.
    let started = Instant::now();
    for packument in &parsed {
        flowpm_stages::packument::Packument::parse_compacted(packument.body()).unwrap();
    }
    let reread = started.elapsed();
    println!(
        "{} packuments, {:.1} MB, {versions} versions: parse {:.0} ms ({:.0} MB/s), {:.1} MB kept; \
         zstd -3 of what is kept {:.0} ms -> {:.1} MB; read back {:.0} ms",
        files.len(),
        bytes as f64 / 1e6,
        parse.as_secs_f64() * 1e3,
        bytes as f64 / 1e6 / parse.as_secs_f64(),
        kept as f64 / 1e6,
        zstd.as_secs_f64() * 1e3,
        compressed as f64 / 1e6,
        reread.as_secs_f64() * 1e3
    );
}
