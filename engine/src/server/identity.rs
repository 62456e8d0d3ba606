//! Who a member is, kept in its data directory: its member ID and its cluster's ID.
//!
//! A member that founds a cluster derives both IDs from its flags; a member that joins a
//! running one (`--initial-cluster-state=existing`) cannot, because `member add` gave it
//! an ID drawn from the time of the add, so it asks the peers named in
//! `--initial-cluster` for the member list and finds itself there by its peer URLs. Either
//! way the IDs are written here before the member first starts, and every later start
//! takes them from here, whatever the flags say (as etcd reads them from its WAL).
//!
//! Not here: the member list itself (the Raft log and snapshots carry it) or deriving
//! IDs (`ids`).

use crate::storage::{Disk, DiskFile};

use super::config::{ClusterState, ServerConfig};
use super::error::ServerError;
use super::membership::MemberRecord;
use super::transport;

/// The file, at the top of the data directory.
pub const IDENTITY_FILE: &str = "member-identity";
/// A second copy, so one damaged sector does not leave the member without its IDs.
pub const IDENTITY_COPY_FILE: &str = "member-identity.copy";
/// Where each copy is written before it is renamed into place.
const IDENTITY_TEMP_FILE: &str = "member-identity.tmp";
/// Encoded size: member ID, cluster ID (little-endian u64s), CRC32C of the two.
const IDENTITY_BYTES: usize = 20;

/// A member's IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// This member's ID.
    pub member_id: u64,
    /// Its cluster's ID.
    pub cluster_id: u64,
}

/// How a member starts: its IDs, and the members it knows before its log tells it more
/// (`None`: the ones in `--initial-cluster`).
#[derive(Debug, Clone)]
pub struct Startup {
    /// The member's IDs.
    pub identity: Identity,
    /// The running cluster's members, when this start joins it.
    pub joined_members: Option<Vec<MemberRecord>>,
}

fn encode(identity: Identity) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(IDENTITY_BYTES);
    bytes.extend_from_slice(&identity.member_id.to_le_bytes());
    bytes.extend_from_slice(&identity.cluster_id.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Result<Identity, String> {
    if bytes.len() != IDENTITY_BYTES {
        return Err(format!("{} bytes, expected {IDENTITY_BYTES}", bytes.len()));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    if crc32c::crc32c(&bytes[..16]) != u32::from_le_bytes(crc) {
        return Err("checksum mismatch".to_owned());
    }
    Ok(Identity {
        member_id: word(0),
        cluster_id: word(8),
    })
}

fn corrupt(why: impl std::fmt::Display) -> ServerError {
    ServerError::Internal(format!("data dir: {IDENTITY_FILE}: {why}"))
}

/// One copy: `None` if the file does not exist, else what it holds.
async fn load_copy<D: Disk>(
    disk: &D,
    path: &str,
) -> Result<Option<Result<Identity, String>>, ServerError> {
    if !disk.exists(path).await.map_err(corrupt)? {
        return Ok(None);
    }
    Ok(Some(match disk.read_all(path).await {
        Ok(bytes) => decode(&bytes),
        Err(e) => Err(e.to_string()),
    }))
}

/// The IDs saved in the data directory, if any: the first copy that is intact. Both
/// copies damaged (or the only one) is an error.
pub async fn load<D: Disk>(disk: &D) -> Result<Option<Identity>, ServerError> {
    let first = load_copy(disk, IDENTITY_FILE).await?;
    let second = load_copy(disk, IDENTITY_COPY_FILE).await?;
    match (first, second) {
        (None, None) => Ok(None),
        (Some(Ok(identity)), _) | (_, Some(Ok(identity))) => Ok(Some(identity)),
        (Some(Err(why)), _) | (None, Some(Err(why))) => Err(corrupt(format!(
            "{why} (and no intact copy in {IDENTITY_COPY_FILE})"
        ))),
    }
}

/// Saves the IDs durably, in both copies (each written aside, synced and renamed into
/// place; then the directory is synced).
pub async fn save<D: Disk>(disk: &D, identity: Identity) -> Result<(), ServerError> {
    for path in [IDENTITY_FILE, IDENTITY_COPY_FILE] {
        let mut file = disk.open(IDENTITY_TEMP_FILE, true).await.map_err(corrupt)?;
        file.set_len(0).await.map_err(corrupt)?;
        file.write_at(0, &encode(identity)).await.map_err(corrupt)?;
        file.sync_data().await.map_err(corrupt)?;
        drop(file);
        disk.rename(IDENTITY_TEMP_FILE, path)
            .await
            .map_err(corrupt)?;
    }
    disk.sync_dir("").await.map_err(corrupt)
}

/// Works out how this member starts: the saved IDs if it ran before; else, when joining
/// a running cluster with an empty data directory, the IDs the cluster's member list
/// gives it; else the IDs its flags give. Saves them before returning.
pub async fn resolve<D: Disk>(config: &ServerConfig, disk: &D) -> Result<Startup, ServerError> {
    if let Some(identity) = load(disk).await? {
        if identity.member_id != config.member_id {
            tracing::info!(
                member = format_args!("{:x}", identity.member_id),
                cluster = format_args!("{:x}", identity.cluster_id),
                "member and cluster IDs from the data dir"
            );
        }
        return Ok(Startup {
            identity,
            joined_members: None,
        });
    }
    let has_log = disk
        .exists(crate::storage::wal::WAL_DIR)
        .await
        .map_err(corrupt)?;
    let startup = if config.initial_cluster_state == ClusterState::Existing && !has_log {
        join(config).await?
    } else {
        Startup {
            identity: Identity {
                member_id: config.member_id,
                cluster_id: config.cluster_id,
            },
            joined_members: None,
        }
    };
    save(disk, startup.identity).await?;
    Ok(startup)
}

/// Asks the other members in `--initial-cluster` for the member list and finds this
/// member in it by its advertised peer URLs.
async fn join(config: &ServerConfig) -> Result<Startup, ServerError> {
    let mut mine = config.advertise_peer_urls.clone();
    mine.sort();
    let others: Vec<String> = config
        .initial_cluster
        .iter()
        .filter(|m| m.name != config.name)
        .flat_map(|m| m.peer_urls.iter().cloned())
        .collect();
    // A peer that is behind on membership changes may not list this member yet: ask
    // the next one.
    let mut failures = Vec::new();
    for url in &others {
        let response = match transport::fetch_members(url).await {
            Ok(response) => response,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let members: Vec<MemberRecord> = response
            .members
            .into_iter()
            .map(MemberRecord::from_peer)
            .collect();
        let me = members.iter().find(|m| {
            let mut urls = m.peer_urls.clone();
            urls.sort();
            urls == mine
        });
        let Some(me) = me else {
            failures.push(format!(
                "{url}: cluster {:x} has no member with peer URLs {mine:?}",
                response.cluster_id
            ));
            continue;
        };
        let identity = Identity {
            member_id: me.id,
            cluster_id: response.cluster_id,
        };
        tracing::info!(
            member = format_args!("{:x}", identity.member_id),
            cluster = format_args!("{:x}", identity.cluster_id),
            "joining a running cluster"
        );
        return Ok(Startup {
            identity,
            joined_members: Some(members),
        });
    }
    Err(ServerError::Internal(format!(
        "cannot join the running cluster (add this member first: etcdctl member add {} --peer-urls={}): {}",
        config.name,
        mine.join(","),
        if failures.is_empty() {
            "--initial-cluster names no other member".to_owned()
        } else {
            failures.join("; ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::mem_disk::MemDisk;

    #[test]
    fn identity_round_trips_and_damage_is_an_error() {
        let identity = Identity {
            member_id: 0x97084cf22650caca,
            cluster_id: 0x1234,
        };
        let bytes = encode(identity);
        assert_eq!(decode(&bytes), Ok(identity));
        let mut flipped = bytes.clone();
        flipped[3] ^= 1;
        assert_eq!(decode(&flipped), Err("checksum mismatch".to_owned()));
        assert!(decode(&bytes[..19]).is_err());
    }

    #[tokio::test]
    async fn saved_identity_is_loaded_back_while_one_copy_is_intact() {
        let disk = MemDisk::new();
        assert_eq!(load(&disk).await.expect("load"), None);
        let identity = Identity {
            member_id: 7,
            cluster_id: 9,
        };
        save(&disk, identity).await.expect("save");
        assert_eq!(load(&disk).await.expect("load"), Some(identity));
        disk.flip_bit(IDENTITY_FILE, 2, 0).expect("flip");
        assert_eq!(load(&disk).await.expect("load"), Some(identity), "the copy");
        disk.flip_bit(IDENTITY_COPY_FILE, 9, 3).expect("flip");
        let error = load(&disk).await.expect_err("both damaged");
        assert!(error.to_string().contains("checksum mismatch"), "{error}");
    }
}
