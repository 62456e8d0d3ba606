//! One-line renderings of messages and entries, for scripts and logs.

use super::super::{ConfChange, Entry, EntryKind, Message, MessageKind};

pub(crate) fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::PreVote => "PreVote",
        MessageKind::PreVoteResp => "PreVoteResp",
        MessageKind::Vote => "Vote",
        MessageKind::VoteResp => "VoteResp",
        MessageKind::Append => "Append",
        MessageKind::AppendResp => "AppendResp",
        MessageKind::Heartbeat => "Heartbeat",
        MessageKind::HeartbeatResp => "HeartbeatResp",
        MessageKind::Snapshot => "Snapshot",
        MessageKind::TimeoutNow => "TimeoutNow",
    }
}

/// An entry's payload for display: text for normal entries, the change for membership.
pub fn describe_data(e: &Entry) -> String {
    match e.kind {
        EntryKind::Normal => String::from_utf8_lossy(&e.data).into_owned(),
        EntryKind::ConfChange => match postcard::from_bytes::<ConfChange>(&e.data) {
            Ok(cc) => format!("conf({:?} {})", cc.kind, cc.node_id),
            Err(_) => "conf(undecodable)".to_string(),
        },
    }
}

/// A one-line rendering of a message for scripts and logs.
pub fn describe(m: &Message) -> String {
    let mut s = format!("{}->{} {:?} term={}", m.from, m.to, m.kind, m.term);
    match m.kind {
        MessageKind::PreVote | MessageKind::Vote => {
            s += &format!(" last={}/{}", m.index, m.log_term);
            if m.transfer {
                s += " transfer";
            }
        }
        MessageKind::Append => {
            s += &format!(" prev={}/{} commit={}", m.index, m.log_term, m.commit);
            if !m.entries.is_empty() {
                let ents: Vec<String> = m
                    .entries
                    .iter()
                    .map(|e| format!("{}/{}:{}", e.index, e.term, describe_data(e)))
                    .collect();
                s += &format!(" [{}]", ents.join(" "));
            }
            if m.read_seq > 0 {
                s += &format!(" seq={}", m.read_seq);
            }
        }
        MessageKind::AppendResp => {
            s += &format!(" index={}", m.index);
            if m.reject {
                s += &format!(" reject hint={}", m.reject_hint);
            }
            if m.read_seq > 0 {
                s += &format!(" seq={}", m.read_seq);
            }
        }
        MessageKind::Heartbeat => s += &format!(" commit={} seq={}", m.commit, m.read_seq),
        MessageKind::HeartbeatResp => s += &format!(" seq={}", m.read_seq),
        MessageKind::Snapshot => {
            if let Some(snap) = &m.snapshot {
                s += &format!(" snap={}/{}", snap.meta.index, snap.meta.term);
            }
            if m.read_seq > 0 {
                s += &format!(" seq={}", m.read_seq);
            }
        }
        MessageKind::PreVoteResp | MessageKind::VoteResp => {
            if m.reject {
                s += " reject";
            }
        }
        MessageKind::TimeoutNow => {}
    }
    s
}
