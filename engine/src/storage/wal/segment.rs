//! Segment files on the disk: naming, listing (with cleanup of half-made segments),
//! atomic creation with preallocation, and zero-filling. No record parsing here.

use std::io;

use super::error::{WalError, io_err};
use super::format::{SEGMENT_HEADER_BYTES, SegmentId, TEMP_SUFFIX};
use super::{Preallocation, WAL_DIR, WalOptions};
use crate::storage::disk::{Disk, DiskFile, join};

/// Size of each zero write when zero-filling a new segment or a torn tail.
const ZERO_CHUNK_BYTES: usize = 1024 * 1024;

pub(super) fn segment_path(id: &SegmentId) -> String {
    join(WAL_DIR, &id.file_name())
}

/// Lists finished segments in order, removing leftover temp files and making the
/// listing durable; ignores (with a warning) anything else.
pub(super) async fn list_segments<D: Disk>(disk: &D) -> Result<Vec<SegmentId>, WalError> {
    if !disk
        .exists(WAL_DIR)
        .await
        .map_err(io_err("stat", WAL_DIR))?
    {
        disk.create_dir_all(WAL_DIR)
            .await
            .map_err(io_err("create", WAL_DIR))?;
        disk.sync_dir("").await.map_err(io_err("sync dir", "."))?;
        return Ok(Vec::new());
    }
    let mut ids = Vec::new();
    for name in disk
        .list_dir(WAL_DIR)
        .await
        .map_err(io_err("list", WAL_DIR))?
    {
        if let Some(id) = SegmentId::parse(&name) {
            ids.push(id);
        } else if name.ends_with(TEMP_SUFFIX) {
            let path = join(WAL_DIR, &name);
            tracing::info!(%path, "wal: removing a segment left half-made by a crash");
            disk.remove_file(&path)
                .await
                .map_err(io_err("remove", &path))?;
        } else {
            tracing::warn!(name, "wal: ignoring an unknown file in the wal directory");
        }
    }
    // After a process crash, entries seen here (the wal directory itself, a segment
    // renamed just before the crash) may not be durable yet; appends must not land in
    // a file that a later power loss could unlink.
    disk.sync_dir("").await.map_err(io_err("sync dir", "."))?;
    disk.sync_dir(WAL_DIR)
        .await
        .map_err(io_err("sync dir", WAL_DIR))?;
    ids.sort();
    Ok(ids)
}

/// Creates a segment atomically: temp file, header, preallocation, sync, rename, sync
/// of the directory. Returns it open for appending.
pub(super) async fn create_segment<D: Disk>(
    disk: &D,
    opts: &WalOptions,
    id: SegmentId,
) -> Result<D::File, WalError> {
    let path = segment_path(&id);
    let temp = format!("{path}.tmp");
    let mut file = disk
        .open(&temp, true)
        .await
        .map_err(io_err("create", &temp))?;
    file.write_at(0, &id.encode_header())
        .await
        .map_err(io_err("write", &temp))?;
    match opts.preallocation {
        Preallocation::None => {}
        Preallocation::Allocate => file
            .preallocate(opts.segment_bytes)
            .await
            .map_err(io_err("preallocate", &temp))?,
        Preallocation::ZeroFill => {
            write_zeros(&mut file, SEGMENT_HEADER_BYTES as u64, opts.segment_bytes)
                .await
                .map_err(io_err("zero-fill", &temp))?;
        }
    }
    file.sync_data().await.map_err(io_err("sync", &temp))?;
    disk.rename(&temp, &path)
        .await
        .map_err(io_err("rename", &temp))?;
    disk.sync_dir(WAL_DIR)
        .await
        .map_err(io_err("sync dir", WAL_DIR))?;
    Ok(file)
}

/// Writes zeros over `from..until`.
pub(super) async fn write_zeros<F: DiskFile>(
    file: &mut F,
    from: u64,
    until: u64,
) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(until.saturating_sub(from) as usize)];
    let mut at = from;
    while at < until {
        let n = (until - at).min(zeros.len() as u64) as usize;
        file.write_at(at, &zeros[..n]).await?;
        at += n as u64;
    }
    Ok(())
}
