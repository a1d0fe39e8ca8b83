//! `junit.xml`: one test case per checker and one for the run itself (or, for a suite, one per
//! run), for CI dashboards. Written with quick-xml, which escapes every name and message.

use crate::results::Results;
use ordeal_checker::Verdict;
use quick_xml::Writer;
use quick_xml::events::BytesText;
use std::io;

/// One JUnit test case: passed (`Valid`), failed (`Invalid`) or in error (`Unknown`).
#[derive(Debug, Clone)]
pub struct Case {
    /// Its name.
    pub name: String,
    /// How it ended.
    pub outcome: Verdict,
    /// Why, for a failure or an error.
    pub message: String,
    /// Its duration in seconds.
    pub time_s: f64,
}

/// XML has no way to carry these control characters, even escaped.
fn printable(s: &str) -> String {
    s.chars().filter(|c| (*c as u32) >= 0x20 || matches!(c, '\n' | '\t')).collect()
}

/// The JUnit XML of one suite of cases.
pub fn suite(name: &str, time_s: f64, cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| c.outcome == Verdict::Invalid).count();
    let errors = cases.iter().filter(|c| c.outcome == Verdict::Unknown).count();
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let written: io::Result<()> = (|| {
        w.write_event(quick_xml::events::Event::Decl(quick_xml::events::BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("testsuites").write_inner_content(|w| {
            w.create_element("testsuite")
                .with_attribute(("name", printable(name).as_str()))
                .with_attribute(("tests", cases.len().to_string().as_str()))
                .with_attribute(("failures", failures.to_string().as_str()))
                .with_attribute(("errors", errors.to_string().as_str()))
                .with_attribute(("time", format!("{time_s:.3}").as_str()))
                .write_inner_content(|w| cases.iter().try_for_each(|c| case(w, name, c)))?;
            Ok(())
        })?;
        Ok(())
    })();
    // Writing into a Vec cannot fail.
    debug_assert!(written.is_ok());
    let mut out = String::from_utf8_lossy(&w.into_inner()).into_owned();
    out.push('\n');
    out
}

fn case(w: &mut Writer<Vec<u8>>, suite: &str, c: &Case) -> io::Result<()> {
    let element = w
        .create_element("testcase")
        .with_attribute(("classname", printable(suite).as_str()))
        .with_attribute(("name", printable(&c.name).as_str()))
        .with_attribute(("time", format!("{:.3}", c.time_s).as_str()));
    let tag = match c.outcome {
        Verdict::Valid => {
            element.write_empty()?;
            return Ok(());
        }
        Verdict::Invalid => "failure",
        Verdict::Unknown => "error",
    };
    let message = printable(&c.message);
    element.write_inner_content(|w| {
        w.create_element(tag)
            .with_attribute(("message", message.as_str()))
            .write_text_content(BytesText::new(&message))?;
        Ok(())
    })?;
    Ok(())
}

/// Renders a run's JUnit XML: a case for the run itself (is its record whole: a readable,
/// complete history of a run that finished and healed?) and one per checker.
pub fn render(r: &Results) -> String {
    let defects: Vec<String> = r.defects.iter().map(ToString::to_string).collect();
    let mut cases = vec![Case {
        name: "run".into(),
        outcome: if defects.is_empty() { Verdict::Valid } else { Verdict::Unknown },
        message: defects.join("; "),
        time_s: r.stats.duration_s,
    }];
    cases.extend(r.checkers.iter().map(|c| Case {
        name: c.name.clone(),
        outcome: c.verdict,
        message: c.summary.clone(),
        time_s: 0.0,
    }));
    suite(&format!("ordeal.{}", r.test.name), r.stats.duration_s, &cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_messages_are_escaped_and_counted() {
        let cases = [
            Case { name: "a<b".into(), outcome: Verdict::Valid, message: String::new(), time_s: 1.0 },
            Case { name: "c\"d".into(), outcome: Verdict::Invalid, message: "x < y & \u{1} z".into(), time_s: 0.0 },
            Case { name: "e".into(), outcome: Verdict::Unknown, message: "budget".into(), time_s: 0.0 },
        ];
        let xml = suite("s&t", 2.0, &cases);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{xml}");
        assert!(xml.contains(r#"name="s&amp;t" tests="3" failures="1" errors="1""#), "{xml}");
        assert!(xml.contains(r#"name="a&lt;b""#), "{xml}");
        assert!(xml.contains(r#"<failure message="x &lt; y &amp;  z">x &lt; y &amp;  z</failure>"#), "{xml}");
        assert!(xml.contains("<error message=\"budget\">budget</error>"), "{xml}");
    }
}
