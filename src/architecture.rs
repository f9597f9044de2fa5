//! The layering of the crate, written down and tested: every module may use only the
//! modules listed before it in [`LAYERS`], so dependencies point one way and there is no
//! cycle. The test reads the `crate::` paths in every source file (imports, and
//! qualified paths in code and doc links alike), so a new edge upwards fails it.
//!
//! Where a lower module must tell an upper one something, it does so through a narrow
//! trait the upper one implements ([`crate::auth::TokenEvents`],
//! [`crate::audit::AuditSink`], [`crate::probe::SendHook`]) or through its return value.

/// The layers, bottom first, each with its modules in their allowed order: a module may
/// use any module listed before it, in its own layer or below.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("utilities", &["util", "fsutil", "redact"]),
    (
        "SMTP vocabulary, TLS trust, resolver, demo server",
        &["smtp", "tls", "resolve", "demo"],
    ),
    ("configuration", &["config"]),
    (
        "domain",
        &[
            "classify", "quota", "state", "auth", "probe", "gate", "audit", "delivery",
        ],
    ),
    ("metrics (a sink of plain results)", &["metrics"]),
    (
        "runtime and edge",
        &[
            "board",
            "scheduler",
            "sinkpool",
            "web",
            "logging",
            "daemon",
            "architecture",
        ],
    ),
];

/// Every module, bottom first.
pub fn order() -> Vec<&'static str> {
    LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// The first segment of every `crate::` path in `text`, grouped imports included.
    fn crate_refs(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // The first identifier of each top-level item: `a::B, c::{d, e}, f`.
                let (mut depth, mut at_start, mut cur) = (1, true, String::new());
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 1 => {
                            at_start = true;
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    if depth == 1 && at_start {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            cur.push(c);
                        } else if !cur.is_empty() {
                            out.insert(std::mem::take(&mut cur));
                            at_start = false;
                        }
                    }
                }
                if !cur.is_empty() {
                    out.insert(cur);
                }
            } else {
                let name = ident(rest);
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        }
        out
    }

    #[test]
    fn every_module_uses_only_modules_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let order = order();
        let rank = |m: &str| order.iter().position(|o| *o == m);
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut problems = Vec::new();
        for f in files {
            let rel = f.strip_prefix(&src).expect("under src");
            let module = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .map(|s| s.trim_end_matches(".rs").to_owned())
                .unwrap_or_default();
            // The crate root and the binary wire everything; they are not layers. This
            // file names modules in its examples.
            if module == "lib" || module == "main" || module == "architecture" {
                continue;
            }
            let Some(own) = rank(&module) else {
                problems.push(format!(
                    "module `{module}` ({}) is in no layer",
                    rel.display()
                ));
                continue;
            };
            let text = std::fs::read_to_string(&f).expect("read source");
            for dep in crate_refs(&text) {
                if dep == module {
                    continue;
                }
                graph.entry(module.clone()).or_default().insert(dep.clone());
                match rank(&dep) {
                    None => {
                        problems.push(format!("{}: uses unknown module `{dep}`", rel.display()))
                    }
                    Some(r) if r > own => problems.push(format!(
                        "{}: `{module}` uses `{dep}`, which is above it",
                        rel.display()
                    )),
                    Some(_) => {}
                }
            }
        }
        let edges: Vec<String> = graph
            .iter()
            .map(|(m, deps)| {
                format!(
                    "{m} -> {}",
                    deps.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        assert!(
            problems.is_empty(),
            "{}\n\nthe graph:\n{}",
            problems.join("\n"),
            edges.join("\n")
        );
    }

    #[test]
    fn grouped_and_qualified_paths_are_read() {
        let refs = crate_refs(
            "use crate::{a::B, c::{d, e}, f};\nlet x = crate::g::h();\n/// [`crate::i::J`]",
        );
        assert_eq!(
            refs.into_iter().collect::<Vec<_>>(),
            ["a", "c", "f", "g", "i"]
        );
    }

    #[test]
    fn the_crate_declares_exactly_the_layered_modules() {
        let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"))
            .expect("lib.rs");
        let declared: BTreeSet<&str> = lib
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub mod "))
            .map(|l| l.trim_end_matches(';'))
            .collect();
        let layered: BTreeSet<&str> = order().into_iter().collect();
        assert_eq!(declared, layered);
    }
}
