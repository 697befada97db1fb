//! The operators' tokens on disk: a sled tree of the store's database, keyed by each token's SHA-256, with
//! its name, role and creation time as JSON. The token itself is never written anywhere but once, to whoever
//! asked for it (and, for the first admin token, to `admin.token` in the data directory, mode 0600).
//!
//! The HTTP API reads it on every request, apart from the core task: a token is not part of the rollout
//! engine's state, and a lookup must not wait behind a batch of device reports.

use std::path::{Path, PathBuf};

use crate::clock::now_millis;
use crate::tokens::{self, Role, TokenInfo, TokenRecord};
use crate::ControllerError;

/// The file the first admin token is written to, in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

#[derive(Clone)]
pub struct TokenStore {
    tree: sled::Tree,
}

impl TokenStore {
    pub fn new(tree: sled::Tree) -> TokenStore {
        TokenStore { tree }
    }

    /// The token's record, if it is one of ours (and not revoked).
    pub fn find(&self, token: &str) -> Result<Option<TokenRecord>, ControllerError> {
        match self.tree.get(tokens::hash(token))? {
            Some(value) => Ok(Some(decode(&value)?)),
            None => Ok(None),
        }
    }

    /// Every token, by name.
    pub fn list(&self) -> Result<Vec<TokenRecord>, ControllerError> {
        let mut all = self.tree.iter().values().map(|v| decode(&v?)).collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Makes a token for a new name; returns the token, which is not kept.
    pub async fn create(&self, name: &str, role: Role) -> Result<(String, TokenInfo), ControllerError> {
        tokens::check_name(name).map_err(ControllerError::BadRequest)?;
        if self.list()?.iter().any(|t| t.name == name) {
            return Err(ControllerError::Conflict(format!(
                "a token named {name:?} exists already (revoke it first: `bindwave token revoke {name}`)"
            )));
        }
        let token = tokens::generate();
        let record =
            TokenRecord { name: name.to_string(), role, sha256: tokens::hash(&token), created_at: now_millis() };
        let value = serde_json::to_vec(&record)
            .map_err(|e| ControllerError::StoreEncode { key: name.to_string(), detail: e.to_string() })?;
        self.tree.insert(record.sha256.as_bytes(), value)?;
        self.tree.flush_async().await?;
        Ok((token, TokenInfo::from(&record)))
    }

    /// Revokes the token of this name: it stops working at once.
    pub async fn revoke(&self, name: &str) -> Result<TokenInfo, ControllerError> {
        let record = self
            .list()?
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ControllerError::NotFound(format!("no token named {name:?} (`bindwave token list`)")))?;
        self.tree.remove(record.sha256.as_bytes())?;
        self.tree.flush_async().await?;
        Ok(TokenInfo::from(&record))
    }

    /// On the first start (no tokens at all), makes the `admin` token and writes it to
    /// `data_dir/admin.token` (mode 0600). Returns the file's path if it wrote one.
    pub async fn first_admin(&self, data_dir: &Path) -> Result<Option<PathBuf>, ControllerError> {
        if !self.tree.is_empty() {
            return Ok(None);
        }
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        // A file left from a store that is gone holds a token nobody knows any more.
        if path.exists() {
            std::fs::remove_file(&path).map_err(crate::error::io_err("remove the stale", &path))?;
        }
        let (token, _) = self.create("admin", Role::Admin).await?;
        crate::keys::write_private(&path, format!("{token}\n").as_bytes())?;
        Ok(Some(path))
    }
}

fn decode(value: &[u8]) -> Result<TokenRecord, ControllerError> {
    serde_json::from_slice(value)
        .map_err(|e| ControllerError::StoreCorrupt { key: "(a token)".into(), detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> TokenStore {
        let db = sled::Config::new().path(dir.join("db")).open().unwrap();
        TokenStore::new(db.open_tree("tokens").unwrap())
    }

    #[tokio::test]
    async fn tokens_are_found_by_their_hash_listed_without_secrets_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let (alice, info) = s.create("alice", Role::Operator).await.unwrap();
        assert_eq!((info.name.as_str(), info.role), ("alice", Role::Operator));
        assert_eq!(s.find(&alice).unwrap().unwrap().name, "alice");
        assert!(s.find("bw_not-a-token").unwrap().is_none());
        assert!(matches!(s.create("alice", Role::Admin).await, Err(ControllerError::Conflict(_))));
        let listed = serde_json::to_string(&s.list().unwrap()).unwrap();
        assert!(!listed.contains(&alice[3..]), "{listed}");
        s.revoke("alice").await.unwrap();
        assert!(s.find(&alice).unwrap().is_none());
        assert!(matches!(s.revoke("alice").await, Err(ControllerError::NotFound(_))));
    }

    #[tokio::test]
    async fn the_first_admin_token_is_written_once_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let path = s.first_admin(dir.path()).await.unwrap().unwrap();
        let token = std::fs::read_to_string(&path).unwrap();
        assert_eq!(s.find(&token).unwrap().unwrap().role, Role::Admin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(s.first_admin(dir.path()).await.unwrap(), None, "only on the first start");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
    }
}
