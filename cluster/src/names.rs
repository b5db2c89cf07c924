//! Names of things in the cluster. NATS subject tokens cannot hold `.`, `*`, `>` or spaces and
//! KV keys only `[-/_=.a-zA-Z0-9]`, while repository keys and ref names may hold anything git
//! allows: everything that reaches a subject or key is a checked name or a hash.

use sha2::{Digest, Sha256};

use crate::ClusterError;

/// A node or prefix name: letters, digits, `-` and `_`, 1–64 long.
pub fn check_name(name: &str) -> Result<&str, ClusterError> {
    let ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok { Ok(name) } else { Err(ClusterError::BadName(name.to_owned())) }
}

/// A name from the network (a version, a file of one) that becomes one path component: no
/// separators, no leading dot (`.`, `..`, hidden and temporary names), printable ASCII.
pub fn check_component(name: &str) -> Result<&str, ClusterError> {
    let ok = !name.is_empty() && name.len() <= 128 && !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
    if ok { Ok(name) } else { Err(ClusterError::BadName(name.to_owned())) }
}

fn hex(bytes: &[u8], chars: usize) -> String {
    bytes.iter().flat_map(|b| [b >> 4, b & 15]).take(chars).map(|n| char::from_digit(n as u32, 16).unwrap()).collect()
}

/// A repository's id in the cluster: `<edge>-<16 hex of sha256(repository key)>`. The same
/// path on two git servers is two repositories, and the id is one subject token.
pub fn repo_id(edge: &str, repo_key: &str) -> String {
    format!("{edge}-{}", hex(&Sha256::digest(repo_key.as_bytes()), 16))
}

/// A ref's id within its repository: 16 hex of sha256(ref name).
pub fn ref_id(refname: &str) -> String {
    hex(&Sha256::digest(refname.as_bytes()), 16)
}

/// The KV key of a ref's state.
pub fn state_key(rid: &str, refname: &str) -> String {
    format!("{rid}.{}", ref_id(refname))
}

/// An adapter version's name in the cluster: the commit's first 12 hex, then 16 hex of the
/// sha256 of its weights file. Content-derived, so one name never stands for two sets of
/// weights, whichever worker made it.
pub fn version_name(commit: &str, weights_sha256: &str) -> String {
    format!("{}-{}", &commit[..commit.len().min(12)], &weights_sha256[..weights_sha256.len().min(16)])
}

/// sha256 of bytes as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes), 64)
}

/// Every JetStream name the cluster uses, from one prefix.
#[derive(Debug, Clone)]
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Result<Self, ClusterError> {
        Ok(Names { prefix: check_name(prefix)?.to_owned() })
    }
    pub fn wake_stream(&self) -> String {
        format!("{}_WAKE", self.prefix.to_uppercase())
    }
    pub fn wake_subjects(&self) -> String {
        format!("{}.wake.>", self.prefix)
    }
    pub fn wake_subject(&self, rid: &str) -> String {
        format!("{}.wake.{rid}", self.prefix)
    }
    pub fn wake_consumer(&self) -> String {
        "workers".to_owned()
    }
    pub fn leases(&self) -> String {
        format!("{}_leases", self.prefix)
    }
    pub fn states(&self) -> String {
        format!("{}_states", self.prefix)
    }
    pub fn tips(&self) -> String {
        format!("{}_tips", self.prefix)
    }
    pub fn workers(&self) -> String {
        format!("{}_workers", self.prefix)
    }
    pub fn versions(&self) -> String {
        format!("{}_versions", self.prefix)
    }
    pub fn adapters(&self) -> String {
        format!("{}_adapters", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_tokens_and_keys() {
        let rid = repo_id("git-1", "my.repo-0123456789ab");
        assert!(rid.starts_with("git-1-") && !rid.contains('.'), "{rid}");
        assert_eq!(rid.len(), "git-1-".len() + 16);
        let key = state_key(&rid, "refs/heads/feature/x y");
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{key}");
        assert_ne!(state_key(&rid, "refs/heads/a"), state_key(&rid, "refs/heads/b"));
        assert_ne!(repo_id("a", "k"), repo_id("b", "k"));
    }

    #[test]
    fn components_from_the_network_stay_one_component() {
        for good in ["0123456789ab-0123456789abcdef", "adapter_model.safetensors", "e1-abcd"] {
            assert!(check_component(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", ".tmp-x", "a b", "x\n"] {
            assert!(check_component(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("edge_1-a").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_names_follow_content() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        let a = version_name(c, &sha256_hex(b"weights a"));
        let b = version_name(c, &sha256_hex(b"weights b"));
        assert_ne!(a, b);
        assert_eq!(a, version_name(c, &sha256_hex(b"weights a")));
        assert!(a.starts_with("0123456789ab-"));
    }
}
