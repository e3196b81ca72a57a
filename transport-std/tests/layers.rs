//! The transport's layers, checked: every module uses only itself and the modules listed
//! after it in the crate doc's `# Layout` list (`src/lib.rs`), the one place the order is
//! stated. Imports are read from the source text: `crate::` paths (also inside
//! `use crate::{..}` groups), names re-exported at the crate root (mapped to the module they
//! come from), and `super::` paths that climb out of a module. Comment lines (doc links
//! included) are not imports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The top-level modules in the order the crate doc lists them, top first.
fn stated_order(lib: &str) -> Vec<String> {
    let layout = lib
        .split("//! # Layout")
        .nth(1)
        .expect("the crate doc has a `# Layout` section");
    layout
        .lines()
        .skip(1) // the rest of the heading's line
        .take_while(|line| line.starts_with("//!"))
        .filter_map(|line| line.strip_prefix("//! - [`"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_owned)
        .collect()
}

/// The names `lib.rs` re-exports from a module of its own, with that module.
fn root_names(lib: &str, modules: &[String]) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    let code = code_only(lib);
    for statement in code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some(module) = modules.iter().find(|m| path.starts_with(&format!("{m}::"))) else {
            continue;
        };
        let last = path.rsplit("::").next().unwrap_or_default();
        let group = last.trim_start_matches('{').trim_end_matches('}');
        let items = if path.contains('{') {
            path[path.find('{').unwrap() + 1..].trim_end_matches('}')
        } else {
            group
        };
        for item in items.split(',') {
            let name = item.split(" as ").last().unwrap_or_default().trim();
            if !name.is_empty() {
                names.insert(name.to_owned(), module.clone());
            }
        }
    }
    names
}

/// The source without its comment lines.
fn code_only(source: &str) -> String {
    source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The leading identifier of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// Every crate-level name one source file refers to, with its line: `crate::x` (and each
/// item of `crate::{x, y::z}`), and `super::` chains that leave the file's module, resolved
/// against `module_path` (the file's module path from the crate root).
fn references(source: &str, module_path: &[String]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let line_no = number + 1;
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                // Items at depth one of the group, each named by its first identifier. A
                // group split over lines is read from the whole statement.
                let statement_start = source.lines().skip(number).collect::<Vec<_>>().join("\n");
                let group = statement_start
                    .split_once("crate::{")
                    .map_or(group.to_owned(), |(_, g)| g.to_owned());
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.push((line_no, ident(item.trim()).to_owned()));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                found.push((line_no, ident(item.trim()).to_owned()));
            } else {
                found.push((line_no, ident(after).to_owned()));
            }
            rest = after;
        }
        let mut rest = line;
        while let Some(at) = rest.find("super::") {
            // Only the start of a chain: `super::super::x` counts once.
            let before = rest[..at].chars().last();
            let mut chain = &rest[at..];
            rest = &rest[at + "super::".len()..];
            if before.is_some_and(|c| c == ':' || c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut up = 0;
            while let Some(next) = chain.strip_prefix("super::") {
                up += 1;
                chain = next;
            }
            if up >= module_path.len() {
                found.push((line_no, ident(chain).to_owned()));
            }
            rest = chain;
        }
    }
    found.retain(|(_, name)| !name.is_empty() && name != "self");
    found
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file's module path from the crate root (`proxy/spool/mod.rs`: `proxy::spool`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The references of every file under `src` that break `order`, as `file:line: a -> b`.
fn violations(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = stated_order(&lib);
    assert!(order.len() >= 8, "the Layout list was not found: {order:?}");
    let names = root_names(&lib, &order);
    let rank = |module: &str| order.iter().position(|m| m == module);
    let mut files = Vec::new();
    sources(src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    for file in files {
        let path = module_path(src, &file);
        let Some(own) = path.first().filter(|m| *m != "lib") else {
            continue;
        };
        let own_rank = rank(own).unwrap_or_else(|| panic!("{own} is not in the Layout list"));
        let source = std::fs::read_to_string(&file).unwrap();
        for (line, name) in references(&source, &path) {
            let target = if rank(&name).is_some() {
                name.clone()
            } else if let Some(module) = names.get(&name) {
                module.clone()
            } else {
                // Re-exports of other crates (`crate::Command`, `crate::zmq`) and macros
                // exported at the root are no layer of this crate.
                continue;
            };
            if rank(&target).unwrap() < own_rank {
                broken.push(format!(
                    "{}:{line}: {own} uses {target} (crate::{name})",
                    file.strip_prefix(src).unwrap().display()
                ));
            }
        }
    }
    broken
}

#[test]
fn every_module_uses_only_the_layers_under_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let broken = violations(&src);
    assert!(
        broken.is_empty(),
        "imports against the stated order:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_split_and_climbing_imports() {
    let source = "use crate::{\n    auth::Users,\n    socket::{a, b},\n};\n\
                  /// [`x`](crate::rpc::X) is a doc link\n\
                  fn f() { let _ = crate::error::E; super::super::proxy::P; }\n";
    let path = ["messaging".to_owned(), "receiver".to_owned()];
    let names: Vec<String> = references(source, &path)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(names, ["auth", "socket", "error", "proxy"]);
    // One level up stays inside `messaging`: not a crate-level reference.
    assert!(references("use super::Handler;", &path).is_empty());
}

#[test]
fn the_order_is_read_from_the_crate_doc() {
    let lib = "//! text\n//! # Layout\n//! - [`top`]: a\n//!   more\n//! - [`low`](x): b\n\
               //!\n//! after\n";
    assert_eq!(stated_order(lib), ["top", "low"]);
}
