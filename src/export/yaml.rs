//! A small YAML writer for the manifests of `pm3 export`: block mappings and sequences, and
//! scalars that a YAML reader cannot take for something else.
//!
//! Every string value is double-quoted with escapes, so nothing a user wrote (`yes`, `no`,
//! `on`, `null`, `0755`, `1e3`, `a: b`, `# x`, leading spaces, NUL, newlines, U+2028…) can be
//! read back as a boolean, a number, a comment or another structure. Mapping keys are written
//! plain only when they are words that cannot be misread (`PORT`, `app.kubernetes.io/name`).

/// A YAML value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    /// Keys in the order given.
    Map(Vec<(String, Node)>),
    Seq(Vec<Node>),
}

impl Node {
    pub fn str(s: impl Into<String>) -> Node {
        Node::Str(s.into())
    }

    /// A mapping from `(key, value)` pairs.
    pub fn map<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Node)>) -> Node {
        Node::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A sequence of strings.
    pub fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Node {
        Node::Seq(items.into_iter().map(|s| Node::str(s.as_ref())).collect())
    }

    fn is_empty_collection(&self) -> bool {
        matches!(self, Node::Map(m) if m.is_empty()) || matches!(self, Node::Seq(s) if s.is_empty())
    }
}

/// `node` as a YAML document body (no `---`), ending with a newline.
pub fn document(node: &Node) -> String {
    let mut out = String::new();
    match node {
        Node::Map(_) | Node::Seq(_) if !node.is_empty_collection() => block(node, 0, &mut out),
        _ => {
            inline(node, &mut out);
            out.push('\n');
        }
    }
    out
}

/// A block collection at `indent`, each entry on its own line(s).
fn block(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Map(pairs) => {
            for (k, v) in pairs {
                out.push_str(&pad);
                key(k, out);
                out.push(':');
                value_after(v, indent + 2, out);
            }
        }
        Node::Seq(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    // `- key: value` with the rest of the mapping aligned under the first key.
                    Node::Map(pairs) if !pairs.is_empty() => {
                        out.push(' ');
                        let mut rest = String::new();
                        block(item, indent + 2, &mut rest);
                        out.push_str(rest.get(indent + 2..).unwrap_or(""));
                    }
                    _ => value_after(item, indent + 2, out),
                }
            }
        }
        _ => {
            out.push_str(&pad);
            inline(node, out);
            out.push('\n');
        }
    }
}

/// What follows `key:` or `-`: a scalar or empty collection on the same line, or a nested
/// block on the next lines.
fn value_after(v: &Node, indent: usize, out: &mut String) {
    if matches!(v, Node::Map(_) | Node::Seq(_)) && !v.is_empty_collection() {
        out.push('\n');
        block(v, indent, out);
    } else {
        out.push(' ');
        inline(v, out);
        out.push('\n');
    }
}

/// A scalar, or an empty collection, on one line.
fn inline(node: &Node, out: &mut String) {
    match node {
        Node::Str(s) => quoted(s, out),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Map(m) if m.is_empty() => out.push_str("{}"),
        Node::Seq(s) if s.is_empty() => out.push_str("[]"),
        // Only reached for empty collections (see `value_after`).
        Node::Map(_) | Node::Seq(_) => out.push_str("{}"),
    }
}

/// Words that YAML 1.1 readers (and so many tools) take for booleans or null.
const AMBIGUOUS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];

/// A mapping key: plain when it is a word that reads back as the same string, quoted otherwise.
fn key(k: &str, out: &mut String) {
    let mut chars = k.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !AMBIGUOUS.contains(&k.to_ascii_lowercase().as_str());
    if plain { out.push_str(k) } else { quoted(k, out) }
}

/// `s` as a YAML double-quoted scalar: `\` and `"` escaped, and every character that is not
/// printable or that YAML treats as a line break (C0 and C1 controls, DEL, U+2028, U+2029) or
/// strips (a byte-order mark) written as an escape.
pub fn quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) < 0x20 || ('\u{7f}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            '\u{2028}' | '\u{2029}' | '\u{feff}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yaml_rust2::{Yaml, YamlLoader};

    fn read(text: &str) -> Yaml {
        let mut docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
        docs.remove(0)
    }

    fn back(node: &Node) -> Yaml {
        match node {
            Node::Str(s) => Yaml::String(s.clone()),
            Node::Int(i) => Yaml::Integer(*i),
            Node::Bool(b) => Yaml::Boolean(*b),
            Node::Seq(items) => Yaml::Array(items.iter().map(back).collect()),
            Node::Map(pairs) => {
                Yaml::Hash(pairs.iter().map(|(k, v)| (Yaml::String(k.clone()), back(v))).collect())
            }
        }
    }

    #[test]
    fn strings_that_look_like_something_else_stay_strings() {
        let tricky = [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "null",
            "~",
            "",
            " ",
            "  lead",
            "trail ",
            "0755",
            "1e3",
            "0x1f",
            ".inf",
            "-",
            "- x",
            "a: b",
            "a #b",
            "#x",
            "[1]",
            "{a}",
            "*ref",
            "&anchor",
            "!tag",
            "|",
            ">",
            "%x",
            "@x",
            "`x",
            "'q'",
            "\"q\"",
            "back\\slash",
            "line\nbreak",
            "nul\0byte",
            "tab\tx",
            "cr\rx",
            "\u{85}next",
            "\u{2028}sep",
            "\u{feff}bom",
            "del\u{7f}",
            "é ü 日本",
            "---",
            "...",
            "? x",
        ];
        for s in tricky {
            let node = Node::map([(s, Node::str(s)), ("k", Node::Seq(vec![Node::str(s)]))]);
            let text = document(&node);
            assert_eq!(read(&text), back(&node), "{s:?} as:\n{text}");
        }
    }

    #[test]
    fn nesting_sequences_of_mappings_and_empty_collections() {
        let node = Node::map([
            ("apiVersion", Node::str("v1")),
            (
                "containers",
                Node::Seq(vec![
                    Node::map([
                        ("name", Node::str("web")),
                        ("command", Node::strs(["/bin/sh", "-c", "echo a | b"])),
                        (
                            "env",
                            Node::Seq(vec![Node::map([("name", Node::str("A")), ("value", Node::str("1"))])]),
                        ),
                    ]),
                    Node::Seq(vec![Node::Int(1), Node::Bool(false)]),
                ]),
            ),
            ("empty", Node::Map(vec![])),
            ("none", Node::Seq(vec![])),
            ("n", Node::Int(-3)),
        ]);
        let text = document(&node);
        assert_eq!(read(&text), back(&node), "{text}");
        assert!(text.contains("  - name: \"web\"\n    command:\n      - \"/bin/sh\"\n"), "{text}");
    }

    fn tree() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            any::<String>().prop_map(Node::Str),
            any::<i64>().prop_map(Node::Int),
            any::<bool>().prop_map(Node::Bool),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Node::Seq),
                proptest::collection::btree_map(any::<String>(), inner, 0..5)
                    .prop_map(|m| Node::Map(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_tree_reads_back_as_written(node in tree()) {
            let wrapped = Node::map([("root", node)]);
            let text = document(&wrapped);
            let docs = YamlLoader::load_from_str(&text);
            prop_assert!(docs.is_ok(), "{:?}\n{}", docs.err(), text);
            let docs = docs.unwrap_or_default();
            prop_assert_eq!(docs.first(), Some(&back(&wrapped)), "{}", text);
        }
    }
}
