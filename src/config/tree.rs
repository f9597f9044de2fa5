//! The document as a generic tree of located nodes, and the checks done on it before
//! serde maps it onto the raw structs.
//!
//! Why a second pass over the same text: serde stops at the first problem and its errors
//! carry a location but not the key. The tree lets us (1) report every unknown key,
//! duplicate key, inline secret and misplaced list/mapping at once, each with its dotted
//! key path and a suggestion, and (2) turn the location of a serde error back into the
//! key path. The tree holds no scalar values, so nothing here can echo a secret.

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::diag::{Diag, suggest};
use super::schema::{Field, SECTIONS, Section, Shape, TOP};

/// A YAML node, stripped of scalar values.
#[derive(Debug)]
pub(super) enum Node {
    Null,
    Scalar,
    Seq(Vec<Spanned<Node>>),
    /// Entries in document order, duplicates kept so they can be reported.
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// The deepest nesting the tree parse accepts. The schema is six levels deep at most
/// (`mailboxes[0].oauth2.grant`); the parser's own default of 64 recursed deep enough to
/// overflow a 2 MiB thread stack in a debug build (found by tests/fuzz.rs), and the tree
/// is built before any key is checked, so the cap applies to unknown keys too.
const MAX_DEPTH: usize = 24;

/// Parses the text into a tree. Duplicate keys are passed through (not refused) so that
/// [`check`] can report each with the line of the first occurrence.
pub(super) fn parse(text: &str) -> Result<Spanned<Node>, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        budget: serde_saphyr::budget! { max_depth: MAX_DEPTH },
        // The tree holds no values, so `1e999` is just a scalar here. Refused, it failed
        // the parse with a message that quotes it, before the inline-secret check could
        // run: `password: 9e9999` was echoed back (found by tests/fuzz.rs).
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options(text, options)
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a key path the way errors show it: `mailboxes[1].oauth2.client_id`.
pub(super) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                // Keys come from the file; escape control characters before they reach a
                // terminal or a log line.
                out.extend(k.escape_debug());
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

/// Checks keys and shapes against the schema tables, reporting every problem.
pub(super) fn check(root: &Spanned<Node>, diag: &mut Diag) {
    match &root.value {
        // An empty document: validation reports the missing mailboxes.
        Node::Null => {}
        Node::Map(entries) => check_map(entries, &TOP, &[], diag),
        // Not about any key: named like a YAML syntax error, the document as a whole.
        _ => diag.at(
            &root.referenced,
            "yaml",
            "the config must be a mapping with the keys global, mailboxes and dns_audit",
        ),
    }
}

fn check_map(
    entries: &[(Spanned<String>, Spanned<Node>)],
    section: &Section,
    path: &[Seg],
    diag: &mut Diag,
) {
    for (i, (key, value)) in entries.iter().enumerate() {
        let name = key.value.as_str();
        let key_path = with(path, Seg::Key(name.to_string()));
        if let Some((first, _)) = entries[..i].iter().find(|(k, _)| k.value == name) {
            diag.at(
                &key.referenced,
                render(&key_path),
                format!(
                    "duplicate key `{}` (first at line {})",
                    name.escape_debug(),
                    first.referenced.line()
                ),
            );
            continue;
        }
        if let Some((_, message)) = section.inline_secrets.iter().find(|(k, _)| *k == name) {
            // Deliberately nothing from `value`: it is the secret.
            diag.at(&key.referenced, render(&key_path), *message);
            continue;
        }
        match section.field(name) {
            Some(field) => check_shape(field, value, &key_path, diag),
            None => diag.at(
                &key.referenced,
                render(&key_path),
                unknown_key(name, section),
            ),
        }
    }
}

fn unknown_key(name: &str, section: &Section) -> String {
    let shown = name.escape_debug();
    if let Some(s) = suggest(name, section.fields.iter().map(|f| f.name)) {
        return format!("unknown key `{shown}`; did you mean `{s}`?");
    }
    // A known key in the wrong place (`client_id` directly under a mailbox) is a likelier
    // mistake than an invented one; say where it goes.
    let homes: Vec<&str> = SECTIONS
        .iter()
        .filter(|(_, s)| s.field(name).is_some())
        .map(|(where_, _)| *where_)
        .collect();
    if !homes.is_empty() {
        return format!(
            "unknown key `{shown}` here; it belongs under {}",
            homes.join(" or ")
        );
    }
    let known: Vec<&str> = section.fields.iter().map(|f| f.name).collect();
    format!("unknown key `{shown}`; known keys: {}", known.join(", "))
}

fn check_shape(field: &Field, value: &Spanned<Node>, path: &[Seg], diag: &mut Diag) {
    let mismatch = |diag: &mut Diag, at: &Spanned<Node>, at_path: &[Seg], what: &str| {
        diag.at(&at.referenced, render(at_path), format!("expected {what}"));
    };
    match (&field.shape, &value.value) {
        // An empty value means "not set"; validation decides whether that is allowed.
        (_, Node::Null) | (Shape::Scalar, Node::Scalar) => {}
        (Shape::List, Node::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                if matches!(item.value, Node::Seq(_) | Node::Map(_)) {
                    mismatch(diag, item, &with(path, Seg::Index(i)), field.what);
                }
            }
        }
        (Shape::Map(section), Node::Map(entries)) => check_map(entries, section, path, diag),
        (Shape::MapList(section), Node::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = with(path, Seg::Index(i));
                match &item.value {
                    Node::Map(entries) => check_map(entries, section, &item_path, diag),
                    _ => mismatch(diag, item, &item_path, "a mapping"),
                }
            }
        }
        _ => mismatch(diag, value, path, field.what),
    }
}

/// The key path of the node at or just before `loc`: where a serde error points.
pub(super) fn locate(root: &Spanned<Node>, line: u64, column: u64) -> Vec<Seg> {
    let target = (line, column);
    let mut best: Option<((u64, u64), Vec<Seg>)> = None;
    visit(root, &mut Vec::new(), &mut |at, path| {
        let pos = (at.line(), at.column());
        // Document order visits parents first, so on a tie the outer node is kept: a
        // type error at a mapping value points at the key holding it, not its first child.
        if pos <= target && best.as_ref().is_none_or(|(b, _)| pos > *b) {
            best = Some((pos, path.to_vec()));
        }
    });
    best.map(|(_, p)| p).unwrap_or_default()
}

fn visit(node: &Spanned<Node>, path: &mut Vec<Seg>, f: &mut dyn FnMut(&Location, &[Seg])) {
    match &node.value {
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                f(&item.referenced, path);
                visit(item, path, f);
                path.pop();
            }
        }
        Node::Map(entries) => {
            for (key, value) in entries {
                path.push(Seg::Key(key.value.clone()));
                f(&key.referenced, path);
                f(&value.referenced, path);
                visit(value, path, f);
                path.pop();
            }
        }
        Node::Null | Node::Scalar => {}
    }
}

/// The schema field at `path` (indices skipped), for "expected {what}" in type errors.
pub(super) fn field_at(path: &[Seg]) -> Option<&'static Field> {
    let mut section: &Section = &TOP;
    let mut found = None;
    for seg in path {
        let Seg::Key(k) = seg else { continue };
        let field = section.field(k)?;
        found = Some(field);
        if let Shape::Map(s) | Shape::MapList(s) = field.shape {
            section = s;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        let tree = parse(text).unwrap();
        let mut diag = Diag::new("c.yaml".into());
        check(&tree, &mut diag);
        diag.into_sorted().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn reports_every_unknown_key() {
        let e = errors(
            "global:\n  intervall: 5m\nmailboxes:\n  - name: a\n    prot: 25\n    client_id: x\n",
        );
        assert_eq!(
            e,
            [
                "c.yaml:2:3: global.intervall: unknown key `intervall`; did you mean `interval`?",
                "c.yaml:5:5: mailboxes[0].prot: unknown key `prot`; did you mean `port`?",
                "c.yaml:6:5: mailboxes[0].client_id: unknown key `client_id` here; it belongs under mailboxes[].oauth2 or sinks[].oauth2",
            ]
        );
    }

    #[test]
    fn reports_duplicates_and_shapes() {
        let e =
            errors("mailboxes:\n  - name: a\n    name: b\n    to: x@y\n    oauth2: [1]\n  - 3\n");
        assert_eq!(
            e,
            [
                "c.yaml:3:5: mailboxes[0].name: duplicate key `name` (first at line 2)",
                "c.yaml:4:9: mailboxes[0].to: expected a list of email addresses, e.g. [canary@example.com]",
                "c.yaml:5:13: mailboxes[0].oauth2: expected a mapping (grant, client_id, ...)",
                "c.yaml:6:5: mailboxes[1]: expected a mapping",
            ]
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_it_recurses() {
        let deep = format!(
            "mailboxes:\n  - to: {}{}\n",
            "[".repeat(200),
            "]".repeat(200)
        );
        let e = crate::config::parse(&deep, std::path::Path::new("c.yaml")).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let shown = e[0].to_string();
        assert!(
            shown.starts_with("c.yaml:") && shown.contains("depth"),
            "{shown}"
        );
    }

    #[test]
    fn a_number_like_inline_secret_is_refused_without_its_value() {
        for secret in ["9e9999", "-1e400", ".inf", ".nan"] {
            let text = format!("mailboxes:\n  - name: a\n    password: {secret}\n");
            let e = crate::config::parse(&text, std::path::Path::new("c.yaml")).unwrap_err();
            let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
            assert!(
                shown
                    .iter()
                    .any(|m| m.contains("inline secrets are refused")),
                "{shown:?}"
            );
            assert!(!shown.iter().any(|m| m.contains(secret)), "{shown:?}");
        }
    }

    #[test]
    fn locate_finds_key_paths() {
        let text = "mailboxes:\n  - name: a\n    port: x\n    to: [a, b]\n";
        let tree = parse(text).unwrap();
        let at = |line, col| render(&locate(&tree, line, col));
        assert_eq!(at(3, 11), "mailboxes[0].port");
        assert_eq!(at(4, 13), "mailboxes[0].to[1]");
        assert_eq!(at(2, 5), "mailboxes[0]");
        assert_eq!(
            field_at(&[
                Seg::Key("mailboxes".into()),
                Seg::Index(0),
                Seg::Key("port".into())
            ])
            .map(|f| f.name),
            Some("port")
        );
    }
}
