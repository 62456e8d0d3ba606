//! The world's membership changes: MemberRemove / MemberAdd through a member's Cluster
//! service (retried, with the outcome read back from the member list), booting a member
//! added back on a fresh disk, and reconciling the world with the cluster's list after
//! the final heal. It holds no state of its own; the [`World`] does.

use std::time::Duration;

use detcd_engine::pb::etcdserverpb::Member;

use super::{
    DiskProfile, MEMBERSHIP_ATTEMPTS, MEMBERSHIP_LIST_ATTEMPTS, MEMBERSHIP_RETRY_MS, SimDisk,
    World, lock,
};
use crate::membership;

impl World {
    /// A member to send cluster requests to: the leader if known, else any up member.
    pub(super) fn contact(&self, not: u64, attempt: u32) -> Option<u64> {
        let up: Vec<u64> = lock(&self.nodes)
            .keys()
            .copied()
            .filter(|m| *m != not && !self.paused.contains(m))
            .collect();
        match self.leader().filter(|l| *l != not) {
            Some(l) if attempt.is_multiple_of(2) => Some(l),
            _ => up.get(attempt as usize % up.len().max(1)).copied(),
        }
    }

    /// The cluster ID and member list, as some up member other than `not` reports it.
    pub(super) async fn list_members(&self, not: u64) -> Result<(u64, Vec<Member>), String> {
        let mut last = "no member to ask".to_owned();
        for attempt in 0..MEMBERSHIP_LIST_ATTEMPTS {
            if let Some(endpoint) = self.contact(not, attempt) {
                match self
                    .admin
                    .spawn(membership::list(endpoint))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                {
                    Ok(r) => return Ok(r),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(MEMBERSHIP_RETRY_MS)).await;
        }
        Err(last)
    }

    /// Whether `member` is in the member list, as some up member reports it.
    pub(super) async fn listed(&self, member: u64) -> Option<bool> {
        let (_, members) = self.list_members(member).await.ok()?;
        Some(members.iter().any(|m| membership::is_member(m, member)))
    }

    pub(super) async fn member_remove(&mut self, member: u64) -> String {
        if self.removed.contains(&member) {
            return " (already removed)".to_owned();
        }
        let mut last = String::new();
        for attempt in 0..MEMBERSHIP_ATTEMPTS {
            let Some(endpoint) = self.contact(member, attempt) else {
                last = "no member to ask".to_owned();
                break;
            };
            match self
                .admin
                .spawn(membership::remove(endpoint, member))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            {
                Ok(()) => break,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(MEMBERSHIP_RETRY_MS)).await;
        }
        match self.listed(member).await {
            Some(false) => {
                self.stop_member(member, true);
                self.down.remove(&member);
                self.removed.insert(member);
                " (removed)".to_owned()
            }
            Some(true) => format!(" (still a member: {last})"),
            None => format!(" (outcome unknown: {last})"),
        }
    }

    pub(super) async fn member_add(&mut self, member: u64) -> String {
        if !self.removed.contains(&member) {
            // A removal whose outcome was unknown may have happened: the member then
            // runs on, refused by the cluster. Its list decides.
            if self.listed(member).await != Some(false) {
                return " (not removed: skipped)".to_owned();
            }
            self.stop_member(member, true);
            self.down.remove(&member);
            self.removed.insert(member);
            self.log(member, "removed after all; adding back".to_owned());
        }
        self.joins += 1;
        let port = u16::try_from(self.joins)
            .ok()
            .and_then(|j| membership::PEER_PORT_FIRST.checked_add(j))
            .unwrap_or(u16::MAX);
        let mut last = String::new();
        for attempt in 0..MEMBERSHIP_ATTEMPTS {
            let Some(endpoint) = self.contact(member, attempt) else {
                last = "no member to ask".to_owned();
                break;
            };
            match self
                .admin
                .spawn(membership::add(endpoint, member, port))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            {
                Ok(_) => break,
                Err(e) => last = e,
            }
            // An add whose answer was lost may have happened: look before retrying.
            if self.listed(member).await == Some(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(MEMBERSHIP_RETRY_MS)).await;
        }
        // The cluster's own list says whether, and on which port, it was added.
        match self.list_members(member).await {
            Ok((cluster_id, members))
                if members.iter().any(|m| membership::is_member(m, member)) =>
            {
                self.boot_joining(member, cluster_id, &members)
            }
            Ok(_) => format!(" (not added: {last})"),
            Err(e) => format!(" (outcome unknown: {last}; list: {e})"),
        }
    }

    /// Boots `member` afresh (empty disk) to join the cluster listed in `members`.
    fn boot_joining(&mut self, member: u64, cluster_id: u64, members: &[Member]) -> String {
        let listed = members.iter().find(|m| membership::is_member(m, member));
        let id = listed.map_or(0, |m| m.id);
        let port = listed
            .and_then(|m| m.peer_ur_ls.first())
            .and_then(|u| u.rsplit(':').next()?.parse().ok())
            .unwrap_or(membership::PEER_PORT_FIRST);
        let config = match membership::joining_config(member, port, cluster_id, members) {
            Ok(c) => c,
            Err(e) => return format!(" (added, but cannot boot: {e})"),
        };
        let Some(host) = self.host_id(member) else {
            return " (no host)".to_owned();
        };
        let profile = self
            .disks
            .get(&member)
            .map_or(DiskProfile::Ssd, SimDisk::profile);
        let disk = SimDisk::new(
            profile,
            self.seed ^ (member << 32) ^ self.joins.rotate_left(29),
        );
        self.disks.insert(member, disk.clone());
        lock(&self.slots).insert(member, (config, disk));
        self.removed.remove(&member);
        self.down.remove(&member);
        self.handle.restart(host);
        self.log(member, "joining as a fresh member".to_owned());
        format!(" (added as {id:x} on peer port {port})")
    }

    /// After the final heal, makes the world agree with the cluster's member list: a
    /// membership change whose outcome was unknown may have happened after all.
    pub(super) async fn reconcile_membership(&mut self) {
        let (cluster_id, members) = match self.list_members(0).await {
            Ok(r) => r,
            Err(e) => {
                self.trace
                    .push(format!("{} membership: cannot list: {e}", self.now_ms()));
                return;
            }
        };
        for m in 1..=self.members {
            let listed = members.iter().any(|x| membership::is_member(x, m));
            let note = if listed && self.removed.contains(&m) {
                self.boot_joining(m, cluster_id, &members)
            } else if !listed && !self.removed.contains(&m) {
                self.stop_member(m, true);
                self.down.remove(&m);
                self.removed.insert(m);
                " (removed after all)".to_owned()
            } else {
                continue;
            };
            self.log(m, format!("membership reconciled{note}"));
            self.trace.push(format!(
                "{} membership n{m} reconciled{note}",
                self.now_ms()
            ));
        }
    }
}
