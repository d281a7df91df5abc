//! `package.json`: the fields an install reads.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::InstallError;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub dev_dependencies: BTreeMap<String, String>,
    #[serde(default)]
    pub optional_dependencies: BTreeMap<String, String>,
    /// The project's own peers: installed as dependencies when no other group has them
    /// (`autoInstallPeers`).
    #[serde(default)]
    pub peer_dependencies: BTreeMap<String, String>,
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Self, InstallError> {
        let bytes = std::fs::read(path).map_err(|e| InstallError::io("read", path, e))?;
        Self::parse(&bytes, path)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, InstallError> {
        serde_json::from_slice(bytes).map_err(|error| InstallError::InvalidFile {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    }
}

/// The `bin` field of an installed package's `package.json`: a string (one command named after
/// the package) or a map of command name to path. `directories.bin` is also honoured.
#[derive(Debug, Default, Deserialize)]
pub struct BinManifest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub bin: Option<serde_json::Value>,
    #[serde(default)]
    pub directories: Option<BinDirectories>,
}

#[derive(Debug, Default, Deserialize)]
pub struct BinDirectories {
    #[serde(default)]
    pub bin: Option<String>,
}
