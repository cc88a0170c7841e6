//! The Markdown reports as GitHub renders them (cmark-gfm): each log
//! inside its own item, every `<details>` closed, names escaped.

use super::*;

/// `markdown` as GitHub renders it: cmark-gfm with tables and raw HTML.
/// CI installs cmark-gfm; without it this fails rather than skip.
pub(in crate::report) fn cmark_gfm(markdown: &str) -> String {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, markdown.as_bytes()).unwrap();
    let output = Command::new("cmark-gfm")
        .args(["-e", "table", "--unsafe"])
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cmark-gfm, GitHub's Markdown renderer, did not start ({e}): install it (apt-get install cmark-gfm)")
        });
    assert!(output.status.success(), "cmark-gfm: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// A node of cmark-gfm's HTML.
#[derive(Debug)]
pub(in crate::report) enum Node {
    Element { tag: String, children: Vec<Node> },
    Text(String),
}

impl Node {
    /// The tree of `html`, which must close every element it opens, in
    /// order. Sound for cmark-gfm's output, where every `<` in text is
    /// escaped.
    pub(in crate::report) fn parse(html: &str) -> Result<Node, String> {
        let text = |raw: &str| {
            Node::Text(
                raw.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&quot;", "\"")
                    .replace("&amp;", "&"),
            )
        };
        let mut open = vec![(String::new(), Vec::new())];
        let mut rest = html;
        while let Some(start) = rest.find('<') {
            open.last_mut().unwrap().1.push(text(&rest[..start]));
            let end = rest[start..].find('>').ok_or("a tag never ends")? + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            let name = tag
                .trim_end_matches('/')
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned();
            if let Some(closing) = tag.strip_prefix('/') {
                if open.len() < 2 {
                    return Err(format!("</{closing}> closes nothing"));
                }
                let (tag, children) = open.pop().unwrap();
                if tag != closing {
                    return Err(format!("</{closing}> closes <{tag}>"));
                }
                open.last_mut()
                    .unwrap()
                    .1
                    .push(Node::Element { tag, children });
            } else if tag.ends_with('/') || ["img", "br", "hr", "input"].contains(&name.as_str()) {
                open.last_mut().unwrap().1.push(Node::Element {
                    tag: name,
                    children: Vec::new(),
                });
            } else {
                open.push((name, Vec::new()));
            }
        }
        open.last_mut().unwrap().1.push(text(rest));
        if open.len() > 1 {
            let unclosed: Vec<&str> = open[1..].iter().map(|(tag, _)| tag.as_str()).collect();
            return Err(format!("never closed: {unclosed:?}"));
        }
        let (_, children) = open.pop().unwrap();
        Ok(Node::Element {
            tag: String::new(),
            children,
        })
    }

    /// The element's tag; empty for text.
    pub(in crate::report) fn tag(&self) -> &str {
        match self {
            Node::Element { tag, .. } => tag,
            Node::Text(_) => "",
        }
    }

    /// The child elements tagged `tag`.
    pub(in crate::report) fn children(&self, tag: &str) -> Vec<&Node> {
        match self {
            Node::Element { children, .. } => children.iter().filter(|c| c.tag() == tag).collect(),
            Node::Text(_) => Vec::new(),
        }
    }

    /// Every element tagged `tag` below this one.
    pub(in crate::report) fn all(&self, tag: &str) -> Vec<&Node> {
        let mut found = Vec::new();
        if let Node::Element { children, .. } = self {
            for child in children {
                if child.tag() == tag {
                    found.push(child);
                }
                found.extend(child.all(tag));
            }
        }
        found
    }

    /// Its text, unescaped.
    pub(in crate::report) fn text(&self) -> String {
        self.text_outside("")
    }

    /// Its text, unescaped, but for that of elements tagged `skipped`.
    pub(in crate::report) fn text_outside(&self, skipped: &str) -> String {
        match self {
            Node::Element { tag, .. } if tag == skipped => String::new(),
            Node::Element { children, .. } => children
                .iter()
                .map(|child| child.text_outside(skipped))
                .collect(),
            Node::Text(text) => text.clone(),
        }
    }
}

#[test]
fn markdown_renders_on_github() {
    let mut summary = Summary::with(
        vec!["5.10".into(), "6.1".into()],
        vec!["a::load".into(), "b::load".into()],
    );
    let records = [
        Record::AgentError {
            kernel: "5.10".into(),
            message: "module virtio_console: EEXIST".into(),
        },
        Record::Outcome {
            kernel: "5.10".into(),
            test: "a::load".into(),
            reproduce: None,
            result: Outcome::Failed {
                reason: "verifier: R1 invalid mem access 'scalar'".into(),
                verifier_log: Some(
                    "0: (79) r1 = *(u64 *)(r1 +0)\n; if (x < `y`) {\n```\nR1 invalid mem access 'scalar'\n\n    indented <b>not bold</b>\n</details>\nprocessed 1 insns\n".into(),
                ),
                kernel_log: None,
            },
        },
        Record::Outcome {
            kernel: "5.10".into(),
            test: "b::load".into(),
            reproduce: None,
            result: Outcome::Failed {
                reason: "verifier: too complex\nfirst detail <x>\n- `not an item`".into(),
                verifier_log: Some("` `` ```` <script>\n- `x`\nthe end".into()),
                kernel_log: None,
            },
        },
        Record::KernelFinished {
            kernel: "5.10".into(),
            error: None,
            console_tail: None,
            infrastructure: false,
        },
        Record::KernelFinished {
            kernel: "6.1".into(),
            error: Some("the VM died\nKernel panic - not syncing: <VFS>".into()),
            console_tail: Some("[    1.0] ```\n[    1.1] <end>".into()),
            infrastructure: false,
        },
    ];
    for record in &records {
        summary.apply(record);
    }
    let failures = crate::report::failure::all(&summary);
    assert_eq!(failures.len(), 4);

    let html = cmark_gfm(&markdown::render(&summary));
    let document = Node::parse(&html).unwrap_or_else(|e| panic!("{e}:\n{html}"));
    let lists = document.children("ul");
    assert_eq!(lists.len(), 1, "{html}");
    let items = lists[0].children("li");
    assert_eq!(items.len(), failures.len(), "{html}");
    for (item, failure) in items.iter().zip(&failures) {
        let (_, sections) = failure.folded();
        let folds = item.children("details");
        assert_eq!(folds.len(), sections.len(), "{html}");
        for (fold, (title, log)) in folds.iter().zip(sections) {
            assert_eq!(fold.children("summary")[0].text(), title);
            let blocks = fold.children("pre");
            assert_eq!(blocks.len(), 1, "{html}");
            let shown: String = log.lines().map(|line| format!("{line}\n")).collect();
            assert_eq!(blocks[0].text(), shown);
        }
    }
    assert_eq!(document.all("details").len(), 5);
    let prose = document.text_outside("pre");
    for raw in ["- `", "- **", "<details", "</details"] {
        assert!(!prose.contains(raw), "{raw} outside the logs:\n{html}");
    }
}
