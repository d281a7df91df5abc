//! Proxy settings (`https-proxy`, `proxy`, `noproxy` in `.npmrc`; `https_proxy`, `NO_PROXY`
//! in the environment), through a loopback `CONNECT` proxy in front of the fixture registry.

use flowpm_fixtures::ConnectProxy;

use crate::common::{Sandbox, pnpm_tree, text};

/// The environment with no proxy variable of its own: those the test names, else none.
fn environment<'a>(proxy_variables: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env: Vec<(&str, &str)> = [
        "https_proxy",
        "HTTPS_PROXY",
        "http_proxy",
        "HTTP_PROXY",
        "proxy",
        "PROXY",
        "ALL_PROXY",
        "all_proxy",
    ]
    .map(|name| (name, ""))
    .into();
    env.extend([("no_proxy", "none.invalid"), ("NO_PROXY", "none.invalid")]);
    for &(name, value) in proxy_variables {
        env.retain(|(existing, _)| *existing != name);
        env.push((name, value));
    }
    env
}

/// Asserts that requests went through `proxy`, every one to the server at `url`.
pub fn assert_tunnelled(proxy: &ConnectProxy, url: &str) {
    let address = url.split_once("://").map_or(url, |(_, rest)| rest);
    let address = address.trim_end_matches('/');
    let targets = proxy.targets();
    assert!(!targets.is_empty(), "nothing went through the proxy");
    assert!(
        targets.iter().all(|target| target == address),
        "{targets:?}, not only {address}"
    );
}

#[test]
fn downloads_go_through_the_proxy_the_npmrc_names() {
    let sandbox = Sandbox::new("graph");
    let proxy = ConnectProxy::start().unwrap();
    std::fs::write(
        sandbox.project().join(".npmrc"),
        format!("https-proxy={}\n", proxy.url()),
    )
    .unwrap();
    let output = sandbox.flowpm_with_env(&["install", "--frozen-lockfile"], &environment(&[]));
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
    assert_tunnelled(&proxy, &sandbox.registry.url());
    assert!(sandbox.registry.tarball_requests() > 0);
}

#[test]
fn noproxy_hosts_are_reached_directly() {
    let sandbox = Sandbox::new("graph");
    let proxy = ConnectProxy::start().unwrap();
    // `proxy` (the https proxy, and so the http one) and a bypass naming the registry's host.
    std::fs::write(
        sandbox.project().join(".npmrc"),
        format!(
            "proxy={}\nnoproxy=example.invalid, 127.0.0.1\n",
            proxy.url()
        ),
    )
    .unwrap();
    let output = sandbox.flowpm_with_env(&["install", "--frozen-lockfile"], &environment(&[]));
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(proxy.targets(), Vec::<String>::new());
    assert!(sandbox.registry.tarball_requests() > 0);
}

#[test]
fn resolution_goes_through_the_proxy_of_the_environment() {
    let sandbox = Sandbox::new("graph");
    let proxy = ConnectProxy::start().unwrap();
    // No lockfile: packuments too are fetched, and pnpm's `https_proxy` applies to the
    // registry's http URL as the http proxy's fallback.
    std::fs::remove_file(sandbox.project().join("pnpm-lock.yaml")).unwrap();
    let url = proxy.url();
    let output = sandbox.flowpm_with_env(&["install"], &environment(&[("https_proxy", &url)]));
    assert!(output.status.success(), "{}", text(&output));
    assert!(sandbox.registry.packument_requests() > 0);
    assert_tunnelled(&proxy, &sandbox.registry.url());
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"));
}

#[test]
fn a_proxy_that_refuses_fails_the_install_naming_the_package() {
    let sandbox = Sandbox::new("graph");
    let proxy = ConnectProxy::start().unwrap();
    proxy.refuse();
    std::fs::write(
        sandbox.project().join(".npmrc"),
        format!("https-proxy={}\nfetch-retries=0\n", proxy.url()),
    )
    .unwrap();
    let output = sandbox.flowpm_with_env(&["install", "--frozen-lockfile"], &environment(&[]));
    assert!(!output.status.success(), "{}", text(&output));
    let error = text(&output);
    assert!(error.contains("@1.0.0") || error.contains("@2."), "{error}");
    assert!(error.to_lowercase().contains("proxy"), "{error}");
    assert_eq!(sandbox.registry.tarball_requests(), 0);
    assert!(
        !sandbox
            .project()
            .join("node_modules/.pnpm/lock.yaml")
            .exists()
    );
}
