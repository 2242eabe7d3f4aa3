//! The inventory: one YAML file describing a deployment's relays, config
//! clusters, how relays are advertised, and how opsctl reaches every node.
//!
//! Loading reads the whole file, merges defaults (global -> site -> node -> the
//! relay kind's own), and validates everything before any command runs. Every
//! problem is reported at once, each with file, line, field and a fix.

mod layers;
pub mod model;
mod read;
mod resolve;

use std::path::{Path, PathBuf};

pub use model::*;
pub use read::strings;

use crate::reader::{At, Diags, InputError};
use crate::suggest;
use crate::yaml;

/// Reads and validates an inventory file.
pub fn load(path: &Path) -> anyhow::Result<Inventory> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            "; pass `--inventory FILE`, set OPSCTL_INVENTORY, or start from inventory.example.yaml"
        } else {
            ""
        };
        anyhow::anyhow!("cannot read inventory {}: {e}{hint}", path.display())
    })?;
    Ok(parse(&text, path)?)
}

/// Validates inventory text; `path` names it in messages and anchors relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Inventory, InputError> {
    let file = path.display().to_string();
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let diags = Diags::new(&file);
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            diags.report(e.pos.unwrap_or_default(), "", e.message, None);
            return Err(diags.finish(()).unwrap_err());
        }
    };
    let inventory = resolve::inventory(&At::root(&root, &diags), file, dir);
    diags.finish(())?;
    Ok(inventory.expect("an inventory that read without problems resolves"))
}

/// A node of any kind, found by name.
pub enum NodeRef<'a> {
    Relay,
    Member { site: &'a Site },
}

impl Inventory {
    pub fn relays(&self) -> impl Iterator<Item = &Relay> {
        self.sites.iter().flat_map(|s| s.relays.iter())
    }

    pub fn members(&self) -> impl Iterator<Item = (&Site, &Member)> {
        self.sites.iter().flat_map(|s| {
            s.cluster
                .iter()
                .flat_map(move |c| c.members.iter().map(move |m| (s, m)))
        })
    }

    pub fn site(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn node(&self, name: &str) -> Option<NodeRef<'_>> {
        if self.relays().any(|r| r.name == name) {
            return Some(NodeRef::Relay);
        }
        self.members()
            .find(|(_, m)| m.name == name)
            .map(|(site, _)| NodeRef::Member { site })
    }

    /// Every node name, for "did you mean".
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.relays()
            .map(|r| r.name.as_str())
            .chain(self.members().map(|(_, m)| m.name.as_str()))
    }

    /// "did you mean `x`?" for a node name that does not exist.
    pub fn suggest_node(&self, name: &str) -> String {
        match suggest::closest(name, self.node_names()) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!(
                "the inventory {} has: {}",
                self.file,
                self.node_names().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    pub fn suggest_site(&self, name: &str) -> String {
        match suggest::closest(name, self.sites.iter().map(|s| s.name.as_str())) {
            Some(n) => format!("did you mean `{n}`?"),
            None => format!(
                "sites in {}: {}",
                self.file,
                self.sites
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}
