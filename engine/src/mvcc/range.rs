//! Range semantics: which keys a `RangeRequest` returns and in what shape.
//!
//! Follows etcd v3.4's rules: `count` is the number of keys in the range at the read
//! revision before the min/max revision filters and the limit; the filters prune, then
//! the result is sorted (sorting by a target other than the key defaults to ascending
//! order), then cut to `limit` (setting `more`). Ties in a sort keep key order. This
//! module reads only; revision checks are done by the caller.

use super::keyspace::{KeyRange, KeySpace};
use crate::pb::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::pb::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use crate::pb::mvccpb::KeyValue;

/// Answers `req` from `keys` as of revision `read_rev`; `header_rev` is the revision the
/// response header reports (etcd reports the current revision, not the read one).
pub(crate) fn range_response(
    keys: &KeySpace,
    req: &RangeRequest,
    read_rev: i64,
    header_rev: i64,
) -> RangeResponse {
    let header = Some(ResponseHeader {
        revision: header_rev,
        ..ResponseHeader::default()
    });
    let mut kvs = keys.range(&KeyRange::new(&req.key, &req.range_end), read_rev);
    let count = kvs.len() as i64;
    if req.count_only {
        return RangeResponse {
            header,
            kvs: Vec::new(),
            more: false,
            count,
        };
    }
    kvs.retain(|kv| passes_filters(req, kv));
    sort_kvs(req, &mut kvs);
    let mut more = false;
    if let Ok(limit) = usize::try_from(req.limit)
        && limit > 0
        && kvs.len() > limit
    {
        kvs.truncate(limit);
        more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse {
        header,
        kvs,
        more,
        count,
    }
}

/// The min/max mod/create revision filters (0 = no bound).
fn passes_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
        || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
        || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
        || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
}

/// The order a request asks for, after etcd's defaulting: a non-key target with no
/// order means ascending. `None` means "key order as stored".
pub fn effective_sort(req: &RangeRequest) -> Option<(SortTarget, bool)> {
    let target = SortTarget::try_from(req.sort_target).ok();
    let mut order = SortOrder::try_from(req.sort_order).ok();
    if req.sort_target != SortTarget::Key as i32 && order == Some(SortOrder::None) {
        order = Some(SortOrder::Ascend);
    }
    let descending = match order? {
        SortOrder::None => return None,
        SortOrder::Ascend => false,
        SortOrder::Descend => true,
    };
    Some((target?, descending))
}

/// Sorts stably by the effective target; ties keep the key order.
fn sort_kvs(req: &RangeRequest, kvs: &mut [KeyValue]) {
    let Some((target, descending)) = effective_sort(req) else {
        return;
    };
    kvs.sort_by(|a, b| {
        let ord = match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        if descending { ord.reverse() } else { ord }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(order: SortOrder, target: SortTarget) -> RangeRequest {
        RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            ..RangeRequest::default()
        }
    }

    #[test]
    fn sort_defaults() {
        assert_eq!(effective_sort(&req(SortOrder::None, SortTarget::Key)), None);
        assert_eq!(
            effective_sort(&req(SortOrder::None, SortTarget::Mod)),
            Some((SortTarget::Mod, false))
        );
        assert_eq!(
            effective_sort(&req(SortOrder::Descend, SortTarget::Key)),
            Some((SortTarget::Key, true))
        );
        assert_eq!(
            effective_sort(&req(SortOrder::Ascend, SortTarget::Value)),
            Some((SortTarget::Value, false))
        );
        let unknown = RangeRequest {
            sort_order: 9,
            ..RangeRequest::default()
        };
        assert_eq!(effective_sort(&unknown), None);
    }
}
