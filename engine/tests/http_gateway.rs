//! etcd's JSON gateway on a real `detcd` process: every path beyond `/v3/kv/*` (lease,
//! watch, cluster, maintenance), with the streaming ones read line by line, and one test
//! that sends the same requests to etcd itself (when an `etcd` binary is installed) and
//! compares the shape of the answers.
//!
//! HTTP/1.1 is written by hand, so the test sees exactly what a curl user sees.

#![cfg(not(madsim))]

mod server_util;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use server_util::{Cluster, eventually, free_port};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long a single streamed line may take to arrive.
const LINE_TIMEOUT_MS: u64 = 5_000;

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(text: &Value) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// An open HTTP/1.1 response whose body is read one chunk-decoded line at a time.
struct Conn {
    reader: BufReader<TcpStream>,
    status: u16,
    chunked: bool,
    decoded: Vec<u8>,
    ended: bool,
}

impl Conn {
    /// Sends `POST path` with `body` and reads the status line and headers.
    async fn post(endpoint: &str, path: &str, body: &str) -> Conn {
        let mut stream = TcpStream::connect(endpoint).await.expect("connects");
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: detcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {line:?}"));
        let mut chunked = false;
        loop {
            line.clear();
            reader.read_line(&mut line).await.expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if line
                .to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
            {
                chunked = true;
            }
        }
        Conn {
            reader,
            status,
            chunked,
            decoded: Vec::new(),
            ended: false,
        }
    }

    /// Reads more of the body into `decoded`; false at its end.
    async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        if !self.chunked {
            let mut rest = Vec::new();
            self.reader.read_to_end(&mut rest).await.expect("body");
            self.decoded.extend(rest);
            self.ended = true;
            return true;
        }
        let mut size = String::new();
        self.reader.read_line(&mut size).await.expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16)
            .unwrap_or_else(|e| panic!("chunk size {size:?}: {e}"));
        if size == 0 {
            self.ended = true;
            return false;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).await.expect("chunk");
        chunk.truncate(size);
        self.decoded.extend(chunk);
        true
    }

    /// The next JSON line of a streamed body, or `None` at its end.
    async fn next_json(&mut self) -> Option<Value> {
        let deadline = Duration::from_millis(LINE_TIMEOUT_MS);
        tokio::time::timeout(deadline, async {
            loop {
                if let Some(at) = self.decoded.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.decoded.drain(..=at).collect();
                    return Some(serde_json::from_slice(&line).expect("a JSON line"));
                }
                if !self.fill().await {
                    if self.decoded.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let rest = std::mem::take(&mut self.decoded);
                    return Some(serde_json::from_slice(&rest).expect("a JSON body"));
                }
            }
        })
        .await
        .expect("a line in time")
    }

    /// The whole (non-streamed) body as JSON.
    async fn json(mut self) -> (u16, Value) {
        while self.fill().await {}
        let value = serde_json::from_slice(&self.decoded)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.decoded)));
        (self.status, value)
    }
}

async fn post(endpoint: &str, path: &str, body: &str) -> (u16, Value) {
    Conn::post(endpoint, path, body).await.json().await
}

/// Starts one `detcd` and waits until its gateway lists it with its client URLs.
async fn single() -> (Cluster, String) {
    let cluster = Cluster::start(1, &[]);
    let endpoint = cluster.members[0].endpoint();
    let ep = endpoint.clone();
    eventually(Duration::from_secs(10), || {
        let ep = ep.clone();
        async move {
            TcpStream::connect(&ep).await.map_err(|e| e.to_string())?;
            // Ready once it has published its client URLs (etcd serves clients only
            // after that; this server serves them from the start).
            match tokio::time::timeout(
                Duration::from_secs(1),
                post(&ep, "/v3/cluster/member/list", "{}"),
            )
            .await
            {
                Ok((200, list)) if list["members"][0].get("clientURLs").is_some() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    (cluster, endpoint)
}

fn id_of(value: &Value) -> u64 {
    value["ID"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an ID string in {value}"))
}

#[tokio::test]
async fn lease_paths() {
    let (_cluster, ep) = single().await;
    let (status, grant) = post(&ep, "/v3/lease/grant", r#"{"TTL":"60"}"#).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["TTL"], "60");
    let id = id_of(&grant);
    post(
        &ep,
        "/v3/kv/put",
        &format!(r#"{{"key":"{}","value":"","lease":"{id}"}}"#, b64(b"held")),
    )
    .await;

    // Two keep-alives in one body: two lines, then the stream ends with the body.
    let mut keep = Conn::post(
        &ep,
        "/v3/lease/keepalive",
        &format!(r#"{{"ID":"{id}"}} {{"ID":"12345"}}"#),
    )
    .await;
    assert_eq!(keep.status, 200);
    let first = keep.next_json().await.expect("a renewal");
    assert_eq!(first["result"]["TTL"], "60", "{first}");
    assert_eq!(id_of(&first["result"]), id);
    let unknown = keep
        .next_json()
        .await
        .expect("an answer for the unknown lease");
    assert_eq!(unknown["result"]["ID"], "12345");
    assert!(
        unknown["result"].get("TTL").is_none(),
        "TTL 0 is left out: {unknown}"
    );
    assert!(
        keep.next_json().await.is_none(),
        "the stream ends with the body"
    );

    for path in ["/v3/lease/timetolive", "/v3/kv/lease/timetolive"] {
        let (status, ttl) = post(&ep, path, &format!(r#"{{"ID":"{id}","keys":true}}"#)).await;
        assert_eq!(status, 200, "{ttl}");
        assert_eq!(ttl["grantedTTL"], "60");
        assert_eq!(ttl["keys"][0], b64(b"held"));
    }
    let (_, missing) = post(&ep, "/v3/lease/timetolive", r#"{"ID":"99"}"#).await;
    assert_eq!(missing["TTL"], "-1");

    for path in ["/v3/lease/leases", "/v3/kv/lease/leases"] {
        let (status, leases) = post(&ep, path, "{}").await;
        assert_eq!(status, 200);
        assert_eq!(leases["leases"][0]["ID"], id.to_string(), "{leases}");
    }

    let (status, _) = post(&ep, "/v3/kv/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#)).await;
    assert_eq!(status, 200);
    let (status, error) = post(&ep, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#)).await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["code"], 5);
    assert_eq!(error["error"], "etcdserver: requested lease not found");
    let (_, gone) = post(
        &ep,
        "/v3/kv/range",
        &format!(r#"{{"key":"{}"}}"#, b64(b"held")),
    )
    .await;
    assert!(
        gone.get("kvs").is_none(),
        "revoking deleted the key: {gone}"
    );

    let (status, error) = post(&ep, "/v3/lease/keepalive", r#"{"ID":x}"#).await;
    assert_eq!(status, 500, "{error}");
    assert_eq!(error["code"], 2);
}

#[tokio::test]
async fn watch_streams_events_until_the_client_leaves() {
    let (_cluster, ep) = single().await;
    let create = format!(
        r#"{{"create_request":{{"key":"{}","range_end":"{}"}}}}"#,
        b64(b"w/"),
        b64(b"w0")
    );
    let mut watch = Conn::post(
        &ep,
        "/v3/watch",
        &format!(r#"{create} {{"progress_request":{{}}}}"#),
    )
    .await;
    assert_eq!(watch.status, 200);
    let created = watch.next_json().await.expect("created");
    assert_eq!(created["result"]["created"], true, "{created}");
    let progress = watch.next_json().await.expect("progress");
    assert_eq!(progress["result"]["watch_id"], "-1", "{progress}");

    // The body has ended, but the watch goes on.
    for (key, value) in [("w/a", "1"), ("other", "x"), ("w/b", "2")] {
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64(key.as_bytes()),
            b64(value.as_bytes())
        );
        assert_eq!(post(&ep, "/v3/kv/put", &body).await.0, 200);
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = watch.next_json().await.expect("an event line");
        for event in line["result"]["events"].as_array().expect("events") {
            assert!(event.get("type").is_none(), "PUT is the default: {event}");
            seen.push(unb64(&event["kv"]["key"]));
        }
    }
    assert_eq!(seen, vec![b"w/a".to_vec(), b"w/b".to_vec()]);

    // A history watch from revision 1 replays every put.
    let mut replay = Conn::post(
        &ep,
        "/v3/watch",
        &format!(
            r#"{{"create_request":{{"key":"{}","start_revision":"1"}}}}"#,
            b64(b"w/a")
        ),
    )
    .await;
    let _created = replay.next_json().await.expect("created");
    let history = replay.next_json().await.expect("history");
    assert_eq!(history["result"]["events"][0]["kv"]["value"], b64(b"1"));

    let empty = format!(
        r#"{{"create_request":{{"key":"{}","range_end":"{}"}}}}"#,
        b64(b"b"),
        b64(b"a")
    );
    let mut refused = Conn::post(&ep, "/v3/watch", &empty).await;
    let line = refused.next_json().await.expect("a refusal");
    assert_eq!(line["result"]["canceled"], true);
    assert_eq!(
        line["result"]["cancel_reason"],
        "mvcc: watcher range is empty"
    );

    let (status, error) = post(&ep, "/v3/watch", "{bad").await;
    assert_eq!(status, 500, "{error}");
    assert_eq!(error["code"], 2);
}

#[tokio::test]
async fn cluster_member_paths() {
    let (_cluster, ep) = single().await;
    let (status, list) = post(&ep, "/v3/cluster/member/list", "").await;
    assert_eq!(status, 200, "{list}");
    let members = list["members"].as_array().expect("members");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["name"], "m0");

    let peer = format!("http://127.0.0.1:{}", free_port());
    let (status, added) = post(
        &ep,
        "/v3/cluster/member/add",
        &format!(r#"{{"peerURLs":["{peer}"],"isLearner":true}}"#),
    )
    .await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["member"]["isLearner"], true);
    assert_eq!(added["members"].as_array().map(Vec::len), Some(2));
    let learner = id_of(&added["member"]);

    let other = format!("http://127.0.0.1:{}", free_port());
    let (status, updated) = post(
        &ep,
        "/v3/cluster/member/update",
        &format!(r#"{{"ID":"{learner}","peerURLs":["{other}"]}}"#),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    // Only learners are promoted, and only once they have caught up: the learner added
    // above never started, so promoting it is refused.
    let (status, behind) = post(
        &ep,
        "/v3/cluster/member/promote",
        &format!(r#"{{"ID":"{learner}"}}"#),
    )
    .await;
    assert_eq!(status, 412, "{behind}");
    assert_eq!(
        behind["error"],
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    let voter = id_of(&members[0]);
    let (status, refused) = post(
        &ep,
        "/v3/cluster/member/promote",
        &format!(r#"{{"ID":"{voter}"}}"#),
    )
    .await;
    assert_eq!(status, 412, "{refused}");
    assert_eq!(
        refused["error"],
        "etcdserver: can only promote a learner member"
    );
    let (status, missing) = post(&ep, "/v3/cluster/member/promote", r#"{"ID":"5"}"#).await;
    assert_eq!(status, 404, "{missing}");

    let (status, removed) = post(
        &ep,
        "/v3/cluster/member/remove",
        &format!(r#"{{"ID":"{learner}"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["members"].as_array().map(Vec::len), Some(1));
    let (status, missing) = post(&ep, "/v3/cluster/member/remove", r#"{"ID":"5"}"#).await;
    assert_eq!(status, 404, "{missing}");
    assert_eq!(missing["error"], "etcdserver: member not found");
}

#[tokio::test]
async fn maintenance_paths() {
    let (_cluster, ep) = single().await;
    let put = format!(r#"{{"key":"{}","value":"{}"}}"#, b64(b"k"), b64(b"v"));
    post(&ep, "/v3/kv/put", &put).await;

    let (status, st) = post(&ep, "/v3/maintenance/status", "{}").await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["version"], "3.4.23");
    assert_eq!(st["leader"], st["header"]["member_id"]);
    let (status, hash) = post(&ep, "/v3/maintenance/hash", "{}").await;
    assert_eq!(status, 200);
    assert!(hash["hash"].is_u64(), "a uint32 is a JSON number: {hash}");
    let (status, defrag) = post(&ep, "/v3/maintenance/defragment", "{}").await;
    assert_eq!(status, 200);
    assert!(defrag["header"].is_object());

    let (_, none) = post(&ep, "/v3/maintenance/alarm", "{}").await;
    assert!(none.get("alarms").is_none(), "{none}");
    let member = st["header"]["member_id"]
        .as_str()
        .expect("member id")
        .to_owned();
    let raise = format!(r#"{{"action":"ACTIVATE","alarm":"NOSPACE","memberID":"{member}"}}"#);
    let (status, raised) = post(&ep, "/v3/maintenance/alarm", &raise).await;
    assert_eq!(status, 200, "{raised}");
    assert_eq!(raised["alarms"][0]["alarm"], "NOSPACE");
    let (status, full) = post(&ep, "/v3/kv/put", &put).await;
    assert_eq!(status, 429, "{full}");
    assert_eq!(full["error"], "etcdserver: mvcc: database space exceeded");
    let lower = raise.replace("ACTIVATE", "DEACTIVATE");
    let (_, lowered) = post(&ep, "/v3/maintenance/alarm", &lower).await;
    assert_eq!(lowered["alarms"][0]["alarm"], "NOSPACE");
    assert_eq!(post(&ep, "/v3/kv/put", &put).await.0, 200);

    let mut snapshot = Conn::post(&ep, "/v3/maintenance/snapshot", "").await;
    assert_eq!(snapshot.status, 200);
    let mut file = Vec::new();
    let mut last_remaining = None;
    while let Some(line) = snapshot.next_json().await {
        let result = &line["result"];
        file.extend(unb64(&result["blob"]));
        last_remaining = Some(result.get("remaining_bytes").cloned());
    }
    assert_eq!(
        last_remaining,
        Some(None),
        "the last chunk has 0 bytes left"
    );
    detcd_engine::server::grpc::maintenance::snapshot_payload(&file)
        .expect("the chunks join to a snapshot file whose checksum holds");

    let (status, error) = post(
        &ep,
        "/v3/maintenance/transfer-leadership",
        r#"{"targetID":"77"}"#,
    )
    .await;
    assert_ne!(status, 200, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("etcdserver: "))
    );
}

/// Every key path in `value`, with the JSON type at its end; array items share `[]`.
/// Values are left out: the IDs and revisions differ between two servers.
fn shape(value: &Value, prefix: &str, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                shape(item, &format!("{prefix}.{key}"), into);
            }
        }
        Value::Array(items) => {
            for item in items {
                shape(item, &format!("{prefix}[]"), into);
            }
        }
        Value::String(_) => {
            into.insert(format!("{prefix}:string"));
        }
        Value::Number(_) => {
            into.insert(format!("{prefix}:number"));
        }
        Value::Bool(_) => {
            into.insert(format!("{prefix}:bool"));
        }
        Value::Null => {
            into.insert(format!("{prefix}:null"));
        }
    }
}

/// Runs a fixed script of gateway requests; returns (label, status, shape) per step.
async fn script(ep: &str) -> Vec<(String, u16, BTreeSet<String>)> {
    let mut out = Vec::new();
    let mut record = |label: &str, status: u16, value: &Value| {
        let mut set = BTreeSet::new();
        shape(value, "", &mut set);
        out.push((label.to_owned(), status, set));
    };
    let (s, grant) = post(ep, "/v3/lease/grant", r#"{"TTL":"60"}"#).await;
    record("lease/grant", s, &grant);
    let id = id_of(&grant);
    let put = format!(
        r#"{{"key":"{}","value":"{}","lease":"{id}"}}"#,
        b64(b"s"),
        b64(b"v")
    );
    let (s, v) = post(ep, "/v3/kv/put", &put).await;
    record("kv/put", s, &v);
    let (s, v) = post(ep, "/v3/kv/range", &format!(r#"{{"key":"{}"}}"#, b64(b"s"))).await;
    record("kv/range", s, &v);
    let (s, v) = post(
        ep,
        "/v3/lease/timetolive",
        &format!(r#"{{"ID":"{id}","keys":true}}"#),
    )
    .await;
    record("lease/timetolive", s, &v);
    let (s, v) = post(ep, "/v3/lease/leases", "{}").await;
    record("lease/leases", s, &v);
    let mut keep = Conn::post(ep, "/v3/lease/keepalive", &format!(r#"{{"ID":"{id}"}}"#)).await;
    let line = keep.next_json().await.expect("a keep-alive line");
    record("lease/keepalive", keep.status, &line);
    let (s, v) = post(ep, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#)).await;
    record("lease/revoke", s, &v);
    let (s, v) = post(ep, "/v3/lease/revoke", &format!(r#"{{"ID":"{id}"}}"#)).await;
    record("lease/revoke unknown", s, &v);
    let (s, v) = post(ep, "/v3/maintenance/status", "{}").await;
    record("maintenance/status", s, &v);
    let (s, v) = post(ep, "/v3/maintenance/hash", "{}").await;
    record("maintenance/hash", s, &v);
    let (s, v) = post(ep, "/v3/maintenance/alarm", r#"{"action":"GET"}"#).await;
    record("maintenance/alarm", s, &v);
    let (s, v) = post(ep, "/v3/maintenance/defragment", "{}").await;
    record("maintenance/defragment", s, &v);
    let (s, v) = post(ep, "/v3/cluster/member/list", "{}").await;
    record("member/list", s, &v);
    let (s, v) = post(ep, "/v3/kv/lease/leases", "{}").await;
    record("kv/lease/leases", s, &v);
    let (s, v) = post(ep, "/v3/lease/timetolive", r#"{"ID":"99"}"#).await;
    record("lease/timetolive unknown", s, &v);
    let (s, v) = post(ep, "/v3/cluster/member/promote", r#"{"ID":"5"}"#).await;
    record("member/promote unknown", s, &v);
    let (s, v) = post(ep, "/v3/maintenance/transfer-leadership", "{}").await;
    record("transfer-leadership to nobody", s, &v);
    let (s, v) = post(ep, "/v3/cluster/member/remove", r#"{"ID":"5"}"#).await;
    record("member/remove unknown", s, &v);
    let (s, v) = post(ep, "/v3/lease/grant", "{bad").await;
    record("bad JSON", s, &v);
    let (s, v) = post(ep, "/v3/watch", "{bad").await;
    record("watch bad JSON", s, &v);
    let watch = format!(
        r#"{{"create_request":{{"key":"{}","start_revision":"1"}}}}"#,
        b64(b"s")
    );
    let mut w = Conn::post(ep, "/v3/watch", &watch).await;
    let created = w.next_json().await.expect("created");
    record("watch created", w.status, &created);
    let events = w.next_json().await.expect("history");
    record("watch history", w.status, &events);
    let mut k = Conn::post(ep, "/v3/lease/keepalive", r#"{"ID":"12345"}"#).await;
    let line = k.next_json().await.expect("a keep-alive line");
    record("lease/keepalive unknown", k.status, &line);
    out
}

/// An `etcd` process, killed when dropped (also when the test fails).
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the installed `etcd` on free loopback ports, or `None` if there is none.
fn start_etcd(dir: &std::path::Path) -> Option<(Etcd, String)> {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return None;
    }
    let port = |_| {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a port")
    };
    let (client, peer) = (port(0), port(1));
    let child = Command::new("etcd")
        .args(server_util::single_member_flags(dir, client, peer))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((Etcd(child), format!("127.0.0.1:{client}")))
}

/// Differences from etcd that are known: etcd 3.4 leaves the header out of Alarm and
/// Defragment answers and the revision out of MemberList's header (this server's
/// services send a full header), and refuses a leadership transfer to member 0 with
/// "bad leader transferee" (412) where this server answers 503. They live in the
/// Maintenance and Cluster services, not in the gateway.
const KNOWN_DIFFERENCES: &[&str] = &[
    "maintenance/alarm: .header.cluster_id:string (only ours)",
    "maintenance/alarm: .header.member_id:string (only ours)",
    "maintenance/alarm: .header.raft_term:string (only ours)",
    "maintenance/alarm: .header.revision:string (only ours)",
    "maintenance/defragment: .header.cluster_id:string (only ours)",
    "maintenance/defragment: .header.member_id:string (only ours)",
    "maintenance/defragment: .header.raft_term:string (only ours)",
    "maintenance/defragment: .header.revision:string (only ours)",
    "member/list: .header.revision:string (only ours)",
    "transfer-leadership to nobody: status 503, etcd 412",
];

#[tokio::test]
async fn answers_have_the_shape_of_etcds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some((etcd, etcd_ep)) = start_etcd(&dir.path().join("etcd")) else {
        eprintln!("no etcd binary installed: the shape comparison is skipped");
        return;
    };
    let ready = etcd_ep.clone();
    eventually(Duration::from_secs(20), || {
        let ep = ready.clone();
        async move {
            match TcpStream::connect(&ep).await {
                Ok(_) => match post(&ep, "/v3/kv/range", r#"{"key":"AA=="}"#).await {
                    (200, _) => Ok(()),
                    other => Err(format!("{other:?}")),
                },
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;
    let theirs = script(&etcd_ep).await;
    drop(etcd);

    let (_cluster, ep) = single().await;
    let ours = script(&ep).await;
    assert_eq!(ours.len(), theirs.len());
    let mut differences = Vec::new();
    for ((label, our_status, our_shape), (_, their_status, their_shape)) in ours.iter().zip(&theirs)
    {
        if our_status != their_status {
            let difference = format!("{label}: status {our_status}, etcd {their_status}");
            if !KNOWN_DIFFERENCES.contains(&difference.as_str()) {
                differences.push(difference);
            }
        }
        for only in our_shape.symmetric_difference(their_shape) {
            let side = if our_shape.contains(only) {
                "only ours"
            } else {
                "only etcd's"
            };
            let difference = format!("{label}: {only} ({side})");
            if !KNOWN_DIFFERENCES.contains(&difference.as_str()) {
                differences.push(difference);
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
