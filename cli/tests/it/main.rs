//! Integration tests: the real `flowpm` binary against the loopback fixture registry.

mod bench;
mod catalogs;
mod common;
mod extensions;
mod faults;
mod git;
mod hoisting;
mod install;
mod local;
mod malformed;
mod overrides;
mod patches;
mod proxy;
mod reliability;
mod resolve;
mod scripts;
mod tls;
mod workspace;
