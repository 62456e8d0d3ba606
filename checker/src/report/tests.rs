use super::*;

fn sample() -> Timeline {
    Timeline {
        title: "hist <1> & \"quotes\"".into(),
        verdict: "Illegal".into(),
        property: Some("stale read: <script>alert(1)</script>".into()),
        ops: vec![
            TimelineOp {
                client: 0,
                call: 10,
                ret: Some(20),
                label: "write <b>1</b>".into(),
                highlighted: false,
                state_before: Some("nil".into()),
                state_after: Some("1 & 'x'".into()),
            },
            TimelineOp {
                client: 1,
                call: 30,
                ret: None,
                label: "read -> ?".into(),
                highlighted: true,
                state_before: None,
                state_after: None,
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
    assert!(page.contains("1 &amp; &#39;x&#39;"));
    // Exactly one script element: ours.
    assert_eq!(page.matches("<script>").count(), 1);
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
    assert!(page.contains("state before: nil"));
    assert!(page.contains("v-Illegal"));
}

#[test]
fn html_handles_an_empty_timeline() {
    let page = html(&Timeline::default());
    assert!(page.contains("0 operations, 0 clients"));
    assert!(page.ends_with("</html>"));
}
