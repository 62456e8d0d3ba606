use super::*;

fn sample() -> Timeline {
    Timeline {
        title: "hist <1> & \"quotes\"".into(),
        verdict: "Illegal".into(),
        property: Some("stale read: <script>alert(1)</script>".into()),
        note: Some("note </script><b>".into()),
        ops: vec![
            TimelineOp {
                client: 0,
                call: 10,
                ret: Some(20),
                label: "write <b>1</b>".into(),
                highlighted: false,
                state_before: Some("nil".into()),
                state_after: Some("1 & 'x'".into()),
                response: Some("ok </script>".into()),
                failure: None,
            },
            TimelineOp {
                client: 1,
                call: 30,
                ret: None,
                label: "read -> ?".into(),
                highlighted: true,
                state_before: None,
                state_after: None,
                response: None,
                failure: Some("expected 1, observed <2>".into()),
            },
        ],
    }
}

#[test]
fn escape_replaces_every_special_character() {
    assert_eq!(
        escape("<a href=\"x\">'&'</a>"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn html_escapes_all_user_text() {
    let page = html(&sample());
    assert!(!page.contains("<script>alert(1)"), "property not escaped");
    assert!(!page.contains("<b>1</b>"), "label not escaped");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(page.contains("write &lt;b&gt;1&lt;/b&gt;"));
    assert!(page.contains("hist &lt;1&gt; &amp; &quot;quotes&quot;"));
    assert!(page.contains("note &lt;/script&gt;&lt;b&gt;"));
    // One script element of ours and one data element; no user text closes either.
    assert_eq!(page.matches("<script>").count(), 1);
    assert_eq!(page.matches("<script").count(), 2);
    assert_eq!(page.matches("</script>").count(), 2);
}

#[test]
fn embedded_data_round_trips_every_field() {
    let t = sample();
    let d = embedded_data(&html(&t)).expect("embedded data parses");
    assert_eq!(d["title"], t.title.as_str());
    assert_eq!(d["property"], t.property.as_deref().unwrap_or_default());
    assert_eq!(d["note"], t.note.as_deref().unwrap_or_default());
    let ops = d["ops"].as_array().expect("ops");
    assert_eq!(ops.len(), t.ops.len());
    for (o, want) in ops.iter().zip(&t.ops) {
        assert_eq!(o["client"], want.client);
        assert_eq!(o["call"], want.call.to_string());
        assert_eq!(
            o["ret"].as_str(),
            want.ret.map(|r| r.to_string()).as_deref()
        );
        assert_eq!(o["label"], want.label.as_str());
        assert_eq!(o["highlighted"], want.highlighted);
        assert_eq!(o["state_before"].as_str(), want.state_before.as_deref());
        assert_eq!(o["state_after"].as_str(), want.state_after.as_deref());
        assert_eq!(o["response"].as_str(), want.response.as_deref());
        assert_eq!(o["failure"].as_str(), want.failure.as_deref());
    }
    // Times above 2^53 survive (JavaScript numbers would round them).
    let mut big = sample();
    big.ops[0].call = u64::MAX - 1;
    let d = embedded_data(&html(&big)).expect("parses");
    assert_eq!(d["ops"][0]["call"], (u64::MAX - 1).to_string());
}

#[test]
fn hover_text_shows_failure_states_and_response_in_order() {
    let mut op = sample().ops[0].clone();
    op.highlighted = true;
    op.failure = Some("checked against X".into());
    let text = info(&op);
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {text}"))
    };
    assert!(at("FAILING") < at("checked against X"));
    assert!(at("checked against X") < at("state before: nil"));
    assert!(at("state before: nil") < at("state after: 1 & 'x'"));
    assert!(at("state after") < at("response: ok </script>"));
}

#[test]
fn html_is_self_contained_and_marks_ops() {
    let page = html(&sample());
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("http://") && !page.contains("https://"));
    assert!(!page.contains(" src="), "no external resources");
    assert_eq!(page.matches("class=\"lane\"").count(), 2);
    assert_eq!(page.matches("class=\"op open bad\"").count(), 1);
    assert_eq!(page.matches("class=\"op\"").count(), 1);
    assert!(page.contains("data-op=\"0\"") && page.contains("data-op=\"1\""));
    assert!(page.contains("v-Illegal"));
}

#[test]
fn html_handles_an_empty_timeline() {
    let page = html(&Timeline::default());
    assert!(page.contains("0 operations, 0 clients"));
    assert!(page.ends_with("</html>"));
}
