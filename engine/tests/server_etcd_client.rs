//! detcd driven by the `etcd-client` crate, a client nobody here wrote: real `detcd`
//! processes on loopback ports with data in temp dirs, killed with SIGKILL and
//! restarted.

#![cfg(not(madsim))]

mod server_util;

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LockOptions, PutOptions, Txn, TxnOp,
    WatchOptions,
};
use server_util::{Cluster, eventually};

const WITHIN: Duration = Duration::from_secs(10);

async fn connect(endpoints: &[String]) -> Client {
    eventually(WITHIN, || Client::connect(endpoints.to_vec(), None)).await
}

/// Retries a put until a member answers it (startup, elections).
async fn put(client: &mut Client, key: &str, value: &str) -> i64 {
    let response = eventually(WITHIN, || {
        let mut client = client.clone();
        let (key, value) = (key.to_owned(), value.to_owned());
        async move { client.put(key, value, None).await }
    })
    .await;
    response.header().map_or(0, |h| h.revision())
}

async fn value(client: &mut Client, key: &str) -> Option<String> {
    let response = eventually(WITHIN, || {
        let mut client = client.clone();
        let key = key.to_owned();
        async move { client.get(key, None).await }
    })
    .await;
    response
        .kvs()
        .first()
        .map(|kv| kv.value_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn kv_requests_behave_as_etcd() {
    let cluster = Cluster::start(1, &[]);
    let mut client = connect(&cluster.endpoints()).await;
    let first = put(&mut client, "fruit/apple", "red").await;
    put(&mut client, "fruit/banana", "yellow").await;
    put(&mut client, "veg/carrot", "orange").await;

    let fruit = client
        .get("fruit/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("range");
    let keys: Vec<&str> = fruit
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap_or(""))
        .collect();
    assert_eq!(keys, ["fruit/apple", "fruit/banana"]);
    assert_eq!(fruit.count(), 2);
    let apple = &fruit.kvs()[0];
    assert_eq!((apple.create_revision(), apple.version()), (first, 1));

    let limited = client
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_limit(1)
                    .with_keys_only(),
            ),
        )
        .await
        .expect("limited range");
    assert!(limited.more());
    assert_eq!(limited.kvs().len(), 1);
    assert!(limited.kvs()[0].value().is_empty(), "keys only");

    let old = client
        .put(
            "fruit/apple",
            "green",
            Some(PutOptions::new().with_prev_key()),
        )
        .await
        .expect("put with prev_kv");
    assert_eq!(
        old.prev_key().map(|kv| kv.value_str().unwrap_or("")),
        Some("red")
    );

    let txn = Txn::new()
        .when([Compare::value("fruit/apple", CompareOp::Equal, "green")])
        .and_then([TxnOp::put("fruit/cherry", "dark", None)])
        .or_else([TxnOp::put("fruit/cherry", "wrong", None)]);
    let outcome = client.txn(txn).await.expect("txn");
    assert!(outcome.succeeded());
    assert_eq!(
        value(&mut client, "fruit/cherry").await.as_deref(),
        Some("dark")
    );

    let deleted = client
        .delete(
            "fruit/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("delete range");
    assert_eq!(deleted.deleted(), 3);
    assert_eq!(
        value(&mut client, "veg/carrot").await.as_deref(),
        Some("orange")
    );

    let at_first = client
        .get("fruit/apple", Some(GetOptions::new().with_revision(first)))
        .await
        .expect("read in the past");
    assert_eq!(at_first.kvs()[0].value_str().unwrap_or(""), "red");
    let current = deleted.header().map_or(0, |h| h.revision());
    client.compact(current, None).await.expect("compact");
    let err = client
        .get("fruit/apple", Some(GetOptions::new().with_revision(first)))
        .await
        .expect_err("compacted");
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );
}

#[tokio::test]
async fn a_killed_member_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(1, &["--snapshot-count=50"]);
    let mut client = connect(&cluster.endpoints()).await;
    for i in 0..200 {
        put(&mut client, &format!("k{i:03}"), &format!("v{i}")).await;
    }
    cluster.kill(0);
    cluster.restart(0);
    let mut client = connect(&cluster.endpoints()).await;
    let all = eventually(WITHIN, || {
        let mut client = client.clone();
        async move { client.get("k", Some(GetOptions::new().with_prefix())).await }
    })
    .await;
    assert_eq!(all.kvs().len(), 200, "{}", cluster.log(0));
    assert_eq!(value(&mut client, "k199").await.as_deref(), Some("v199"));
    let snapshots = std::fs::read_dir(cluster.members[0].data_dir.join("snap"))
        .expect("snap dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .count();
    assert!(
        snapshots >= 1,
        "--snapshot-count=50 after 200 writes leaves a snapshot"
    );
}

#[tokio::test]
async fn watches_replay_history_and_follow_a_prefix() {
    let cluster = Cluster::start(1, &[]);
    let mut client = connect(&cluster.endpoints()).await;
    let start = put(&mut client, "w/a", "1").await;
    put(&mut client, "w/b", "2").await;
    put(&mut client, "other", "x").await;
    let mut stream = client
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_start_revision(start)),
        )
        .await
        .expect("watch");
    client.delete("w/a", None).await.expect("delete");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let response = tokio::time::timeout(WITHIN, stream.message())
            .await
            .expect("watch events in time")
            .expect("stream")
            .expect("a response");
        for event in response.events() {
            let kv = event.kv().expect("kv");
            seen.push((
                event.event_type(),
                kv.key_str().unwrap_or("").to_owned(),
                kv.mod_revision(),
            ));
        }
    }
    assert_eq!(
        seen,
        [
            (EventType::Put, "w/a".to_owned(), start),
            (EventType::Put, "w/b".to_owned(), start + 1),
            (EventType::Delete, "w/a".to_owned(), start + 3),
        ]
    );
}

#[tokio::test]
async fn leases_keep_keys_alive_and_their_expiry_deletes_them() {
    let cluster = Cluster::start(1, &[]);
    let mut client = connect(&cluster.endpoints()).await;
    put(&mut client, "warmup", "1").await;
    let lease = client.lease_grant(2, None).await.expect("grant");
    client
        .put(
            "session",
            "alive",
            Some(PutOptions::new().with_lease(lease.id())),
        )
        .await
        .expect("put with lease");
    let (mut keeper, mut responses) = client
        .lease_keep_alive(lease.id())
        .await
        .expect("keep-alive");
    for _ in 0..4 {
        keeper.keep_alive().await.expect("send keep-alive");
        let answer = responses.message().await.expect("stream").expect("answer");
        assert!(answer.ttl() > 0);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(
        value(&mut client, "session").await.as_deref(),
        Some("alive"),
        "kept alive past its TTL"
    );
    let ttl = client
        .lease_time_to_live(
            lease.id(),
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .expect("ttl");
    assert_eq!(ttl.keys().len(), 1);
    drop(keeper);
    let gone = eventually(Duration::from_secs(15), || {
        let mut client = client.clone();
        async move {
            let r = client
                .get("session", None)
                .await
                .map_err(|e| e.to_string())?;
            if r.kvs().is_empty() {
                Ok(())
            } else {
                Err("still there".to_owned())
            }
        }
    })
    .await;
    assert_eq!(gone, ());
    let err = client
        .put("late", "x", Some(PutOptions::new().with_lease(lease.id())))
        .await
        .expect_err("the lease is gone");
    assert!(
        err.to_string().contains("requested lease not found"),
        "{err}"
    );
}

#[tokio::test]
async fn locks_exclude_and_elections_elect() {
    let cluster = Cluster::start(1, &[]);
    let mut client = connect(&cluster.endpoints()).await;
    put(&mut client, "warmup", "1").await;
    let lease = client.lease_grant(10, None).await.expect("grant").id();
    let held = client
        .lock("jobs", Some(LockOptions::new().with_lease(lease)))
        .await
        .expect("lock");
    let mut other = client.clone();
    let other_lease = other.lease_grant(10, None).await.expect("grant").id();
    let waiting = tokio::spawn(async move {
        other
            .lock("jobs", Some(LockOptions::new().with_lease(other_lease)))
            .await
            .map(|r| r.key().to_vec())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the second locker waits");
    client.unlock(held.key()).await.expect("unlock");
    let second = tokio::time::timeout(WITHIN, waiting)
        .await
        .expect("the second locker gets the lock")
        .expect("task")
        .expect("lock");
    assert!(second.starts_with(b"jobs/"));

    let campaign = client
        .campaign("leader", "me", lease)
        .await
        .expect("campaign");
    let leader = client.leader("leader").await.expect("leader");
    assert_eq!(
        leader.kv().map(|kv| kv.value().to_vec()),
        Some(b"me".to_vec())
    );
    client
        .resign(Some(
            etcd_client::ResignOptions::new().with_leader(campaign.leader().expect("key").clone()),
        ))
        .await
        .expect("resign");
}

#[tokio::test]
async fn three_members_keep_serving_when_the_leader_is_killed() {
    let mut cluster = Cluster::start(3, &[]);
    let mut client = connect(&cluster.endpoints()).await;
    for i in 0..20 {
        put(&mut client, &format!("before{i}"), "v").await;
    }
    let members = client.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 3);

    let status = eventually(WITHIN, || {
        let mut client = client.clone();
        async move { client.status().await }
    })
    .await;
    let leader_id = status.leader();
    let leader = members
        .members()
        .iter()
        .position(|m| m.id() == leader_id)
        .expect("the leader is a member");
    let name = &members.members()[leader].name().to_owned();
    let index = cluster
        .members
        .iter()
        .position(|m| &m.name == name)
        .expect("by name");
    cluster.kill(index);

    let survivors: Vec<String> = cluster
        .members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, m)| m.endpoint())
        .collect();
    let mut client = connect(&survivors).await;
    for i in 0..20 {
        put(&mut client, &format!("after{i}"), "v").await;
    }
    assert_eq!(value(&mut client, "before19").await.as_deref(), Some("v"));

    cluster.restart(index);
    let mut back = connect(&[cluster.members[index].endpoint()]).await;
    let caught_up = eventually(WITHIN, || {
        let mut back = back.clone();
        async move {
            let r = back
                .get("after19", Some(GetOptions::new().with_serializable()))
                .await
                .map_err(|e| e.to_string())?;
            if r.kvs().is_empty() {
                Err("not yet".to_owned())
            } else {
                Ok(())
            }
        }
    })
    .await;
    assert_eq!(caught_up, ());
    assert_eq!(value(&mut back, "after0").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn members_can_be_added_and_removed() {
    let cluster = Cluster::start(3, &[]);
    let mut client = connect(&cluster.endpoints()).await;
    put(&mut client, "warmup", "1").await;
    let port = server_util::free_port();
    let added = eventually(WITHIN, || {
        let mut client = client.clone();
        async move {
            client
                .member_add(
                    [format!("http://127.0.0.1:{port}")],
                    Some(etcd_client::MemberAddOptions::new().with_is_learner()),
                )
                .await
        }
    })
    .await;
    let new_id = added.member().expect("the added member").id();
    assert_eq!(added.member_list().len(), 4);
    let list = client.member_list().await.expect("list");
    assert!(
        list.members()
            .iter()
            .any(|m| m.id() == new_id && m.is_learner())
    );
    let removed = match client.member_remove(new_id).await {
        Ok(removed) => removed,
        Err(e) => panic!(
            "remove: {e}\n{}\n{}\n{}",
            cluster.log(0),
            cluster.log(1),
            cluster.log(2)
        ),
    };
    assert_eq!(removed.members().len(), 3);
}
