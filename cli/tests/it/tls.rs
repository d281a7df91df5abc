//! Certificates: an https registry (the fixture registry behind a TLS front whose certificate
//! a test CA signed) is trusted through `.npmrc` `cafile` or `ca`, `NODE_EXTRA_CA_CERTS`, or
//! not checked at all with `strict-ssl=false`; otherwise the install fails at once. A registry
//! that requires a client certificate gets one from `cert` and `key` or from `:certfile` and
//! `:keyfile` for its URL.

use std::process::{Command, Output};

use flowpm_fixtures::{ConnectProxy, TlsFront, test_ca_path, test_client_cert_paths};

use crate::common::{Sandbox, pnpm_tree, text};
use crate::proxy::assert_tunnelled;

/// `flowpm install --frozen-lockfile` from `registry` into a fresh store, with no user or
/// global configuration, no `NODE_EXTRA_CA_CERTS` and no proxy but what `env` adds.
fn install_from(sandbox: &Sandbox, registry: &str, run: &str, env: &[(&str, &str)]) -> Output {
    let store = sandbox.root.path().join(format!("store-{run}"));
    let _ = std::fs::remove_dir_all(sandbox.project().join("node_modules"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowpm"));
    command
        .args(["install", "--frozen-lockfile", "--registry", registry])
        .arg("--store-dir")
        .arg(&store)
        .current_dir(sandbox.project())
        .env("HOME", sandbox.root.path())
        .env(
            "NPM_CONFIG_USERCONFIG",
            sandbox.root.path().join("no-npmrc"),
        )
        .env(
            "NPM_CONFIG_GLOBALCONFIG",
            sandbox.root.path().join("no-npmrc"),
        )
        .env_remove("NODE_EXTRA_CA_CERTS");
    for name in ["https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"] {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn npmrc(sandbox: &Sandbox, text: &str) {
    std::fs::write(sandbox.project().join(".npmrc"), text).unwrap();
}

/// [`install_from`], which must succeed and give pnpm's tree.
fn installs(sandbox: &Sandbox, registry: &str, run: &str, env: &[(&str, &str)]) {
    let output = install_from(sandbox, registry, run, env);
    assert!(output.status.success(), "{run}: {}", text(&output));
    assert_eq!(sandbox.manifest(), pnpm_tree("graph"), "{run}");
}

#[test]
fn an_unknown_certificate_authority_fails_at_once_naming_the_url() {
    let sandbox = Sandbox::new("graph");
    let front = TlsFront::start(sandbox.registry.address()).unwrap();
    let output = install_from(&sandbox, &front.url(), "untrusted", &[]);
    assert!(!output.status.success(), "{}", text(&output));
    let error = text(&output);
    assert!(error.contains(&front.url()), "{error}");
    assert!(error.contains("certificate"), "{error}");
    // Not retried: a certificate refused once is refused again.
    assert!(!error.contains("attempts"), "{error}");
    assert_eq!(sandbox.registry.tarball_requests(), 0);
}

#[test]
fn cafile_ca_and_node_extra_ca_certs_are_trusted() {
    let sandbox = Sandbox::new("graph");
    let front = TlsFront::start(sandbox.registry.address()).unwrap();
    let ca = test_ca_path();
    npmrc(&sandbox, &format!("cafile={}\n", ca.display()));
    installs(&sandbox, &front.url(), "cafile", &[]);

    // npm's `ca`: the PEM itself, its newlines written `\n`.
    let pem = std::fs::read_to_string(&ca).unwrap();
    npmrc(
        &sandbox,
        &format!("ca=\"{}\"\n", pem.trim_end().replace('\n', "\\n")),
    );
    installs(&sandbox, &front.url(), "ca", &[]);

    npmrc(&sandbox, "");
    installs(
        &sandbox,
        &front.url(),
        "extra",
        &[("NODE_EXTRA_CA_CERTS", ca.to_str().unwrap())],
    );
}

#[test]
fn strict_ssl_false_accepts_any_certificate() {
    let sandbox = Sandbox::new("graph");
    let front = TlsFront::start(sandbox.registry.address()).unwrap();
    npmrc(&sandbox, "strict-ssl=false\n");
    installs(&sandbox, &front.url(), "unchecked", &[]);
}

#[test]
fn an_https_registry_through_a_proxy() {
    let sandbox = Sandbox::new("graph");
    let front = TlsFront::start(sandbox.registry.address()).unwrap();
    let proxy = ConnectProxy::start().unwrap();
    npmrc(
        &sandbox,
        &format!(
            "cafile={}\nhttps-proxy={}\nnoproxy=none.invalid\n",
            test_ca_path().display(),
            proxy.url()
        ),
    );
    installs(&sandbox, &front.url(), "proxied", &[]);
    assert_tunnelled(&proxy, &front.url());
}

#[test]
fn a_registry_requiring_a_client_certificate_gets_the_configured_one() {
    let sandbox = Sandbox::new("graph");
    let front = TlsFront::requiring_client_cert(sandbox.registry.address()).unwrap();
    let trust = format!("cafile={}\n", test_ca_path().display());
    npmrc(&sandbox, &trust);
    let output = install_from(&sandbox, &front.url(), "without", &[]);
    assert!(!output.status.success(), "{}", text(&output));
    let error = text(&output);
    assert!(error.contains(&front.url()), "{error}");
    assert!(error.contains("wants a client certificate"), "{error}");
    assert!(!error.contains("attempts"), "not retried: {error}");
    assert_eq!(sandbox.registry.tarball_requests(), 0);

    // Files for the registry's URL (`//host:port/:certfile`, as npm and pnpm read them).
    let (cert, key) = test_client_cert_paths();
    let nerfed = front.url().replace("https:", "");
    npmrc(
        &sandbox,
        &format!(
            "{trust}{nerfed}:certfile={}\n{nerfed}:keyfile={}\n",
            cert.display(),
            key.display()
        ),
    );
    installs(&sandbox, &front.url(), "certfile", &[]);
    // Another registry's certificate is not sent here.
    npmrc(
        &sandbox,
        &format!(
            "{trust}//other.invalid/:certfile={}\n//other.invalid/:keyfile={}\n",
            cert.display(),
            key.display()
        ),
    );
    let output = install_from(&sandbox, &front.url(), "other", &[]);
    assert!(
        text(&output).contains("wants a client certificate"),
        "{}",
        text(&output)
    );

    // `cert` and `key`: the PEM text itself, newlines written `\n`.
    let inline = |path: &std::path::Path| {
        let pem = std::fs::read_to_string(path).unwrap();
        format!("\"{}\"", pem.trim_end().replace('\n', "\\n"))
    };
    npmrc(
        &sandbox,
        &format!("{trust}cert={}\nkey={}\n", inline(&cert), inline(&key)),
    );
    installs(&sandbox, &front.url(), "inline", &[]);

    // The registry's own files win over `cert` and `key` (here a certificate the registry
    // does not accept: the test server's own).
    let server = test_ca_path().with_file_name("server.pem");
    let server_key = test_ca_path().with_file_name("server.key");
    let wrong = format!(
        "{trust}cert={}\nkey={}\n",
        inline(&server),
        inline(&server_key)
    );
    npmrc(&sandbox, &wrong);
    assert!(
        !install_from(&sandbox, &front.url(), "wrong", &[])
            .status
            .success()
    );
    npmrc(
        &sandbox,
        &format!(
            "{wrong}{nerfed}:certfile={}\n{nerfed}:keyfile={}\n",
            cert.display(),
            key.display()
        ),
    );
    installs(&sandbox, &front.url(), "scoped-wins", &[]);

    // Half a pair is a configuration error naming the setting, before any request.
    npmrc(&sandbox, &format!("{trust}cert={}\n", inline(&cert)));
    let output = install_from(&sandbox, &front.url(), "half", &[]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("`cert` and `key`"),
        "{}",
        text(&output)
    );
}
