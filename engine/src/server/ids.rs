//! Member and cluster IDs, derived exactly as etcd derives them, so a detcd cluster
//! started with the same flags as an etcd cluster reports the same IDs.
//!
//! - A member's ID is the first 8 bytes (big-endian) of the SHA-1 of its sorted peer URLs
//!   concatenated, then the cluster token, then — for members added at runtime — the
//!   decimal Unix time of the addition.
//! - The cluster's ID is the first 8 bytes (big-endian) of the SHA-1 of the sorted member
//!   IDs, each as 8 big-endian bytes.

use sha1::{Digest, Sha1};

/// The ID of a member with these peer URLs in the cluster named by `token`.
/// `added_at_unix_s` is `None` for members of the initial cluster.
pub fn member_id(peer_urls: &[String], token: &str, added_at_unix_s: Option<i64>) -> u64 {
    let mut sorted: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for url in sorted {
        hasher.update(url.as_bytes());
    }
    hasher.update(token.as_bytes());
    if let Some(seconds) = added_at_unix_s {
        hasher.update(seconds.to_string().as_bytes());
    }
    first_eight_bytes(&hasher.finalize())
}

/// The ID of a cluster made of these members.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut sorted = member_ids.to_vec();
    sorted.sort_unstable();
    let mut hasher = Sha1::new();
    for id in sorted {
        hasher.update(id.to_be_bytes());
    }
    first_eight_bytes(&hasher.finalize())
}

fn first_eight_bytes(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn member_id_is_sha1_prefix_of_sorted_urls_and_token() {
        // SHA-1("http://localhost:2380etcd-cluster") starts with 8e 9e 05 c5 2164694d,
        // the ID etcd prints for a default single-member cluster.
        let id = member_id(&urls(&["http://localhost:2380"]), "etcd-cluster", None);
        assert_eq!(id, 0x8e9e_05c5_2164_694d);
    }

    #[test]
    fn member_id_ignores_url_order_but_not_token_or_time() {
        let a = member_id(&urls(&["http://b:2380", "http://a:2380"]), "t", None);
        let b = member_id(&urls(&["http://a:2380", "http://b:2380"]), "t", None);
        assert_eq!(a, b);
        assert_ne!(
            a,
            member_id(&urls(&["http://a:2380", "http://b:2380"]), "u", None)
        );
        assert_ne!(
            a,
            member_id(&urls(&["http://a:2380", "http://b:2380"]), "t", Some(1))
        );
    }

    #[test]
    fn cluster_id_of_default_member() {
        // etcd's default single-member cluster reports cluster ID cdf818194e3a8c32.
        assert_eq!(cluster_id(&[0x8e9e_05c5_2164_694d]), 0xcdf8_1819_4e3a_8c32);
        assert_eq!(cluster_id(&[1, 2]), cluster_id(&[2, 1]));
    }
}
