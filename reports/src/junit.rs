//! `junit.xml`: one test case per checker and one for the run itself, for CI dashboards.

use crate::results::Results;
use ordeal_checker::Verdict;
use std::fmt::Write;

/// Escapes text for XML attributes and content.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Renders the JUnit XML.
pub fn render(r: &Results) -> String {
    let mut cases = Vec::new();
    let run_ok = r.run.as_ref().is_none_or(|run| run.heal_error.is_none() && run.harness_error.is_none());
    let run_message =
        r.run.as_ref().and_then(|run| run.harness_error.clone().or(run.heal_error.clone())).unwrap_or_default();
    cases.push(("run".to_owned(), if run_ok { Verdict::Valid } else { Verdict::Unknown }, run_message));
    for c in &r.checkers {
        cases.push((c.name.clone(), c.verdict, c.summary.clone()));
    }
    let failures = cases.iter().filter(|c| c.1 == Verdict::Invalid).count();
    let errors = cases.iter().filter(|c| c.1 == Verdict::Unknown).count();
    let suite = escape(&r.test.name);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites>\n  <testsuite name=\"ordeal.{suite}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{:.3}\">",
        cases.len(),
        r.stats.duration_s
    );
    for (name, verdict, message) in cases {
        let _ = write!(out, "    <testcase classname=\"ordeal.{suite}\" name=\"{}\"", escape(&name));
        match verdict {
            Verdict::Valid => out.push_str("/>\n"),
            Verdict::Invalid => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                    escape(&message),
                    escape(&message)
                );
            }
            Verdict::Unknown => {
                let _ = writeln!(
                    out,
                    ">\n      <error message=\"{}\">{}</error>\n    </testcase>",
                    escape(&message),
                    escape(&message)
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
