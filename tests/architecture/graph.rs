//! The import graph of a crate's source, file by file, read from the paths its code names
//! (`crate::…`, `super::…`, `self::…`, with `{…}` groups expanded) and resolved to the file that
//! defines the module named. Test code (inline `mod tests`, `*tests.rs`, `tests/` folders) is left
//! out: what tests reach for is not the architecture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's files: each file's module path (`controller::tasks::poller`) and its code.
pub struct Crate {
    pub modules: BTreeMap<Vec<String>, (PathBuf, String)>,
}

/// A module path as text, `crate` for the root.
pub fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

impl Crate {
    /// Reads every `.rs` file below `src` that is not test code.
    pub fn read(src: &Path) -> Crate {
        let files = super::rust_files(src)
            .into_iter()
            .filter(|f| !is_test_file(src, f))
            .map(|f| {
                let code = super::code_of(&f);
                (f, code)
            })
            .collect::<Vec<_>>();
        Crate::from_files(src, files)
    }

    /// A crate from files given with their code (the planted-circle tests edit the code first).
    pub fn from_files(src: &Path, files: Vec<(PathBuf, String)>) -> Crate {
        let modules = files
            .into_iter()
            .map(|(file, code)| (module_of(src, &file), (file, without_tests(&code))))
            .collect();
        Crate { modules }
    }

    /// For each module, the other modules of this crate it names.
    pub fn edges(&self) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut edges = BTreeMap::new();
        for (module, (_, code)) in &self.modules {
            let named: BTreeSet<Vec<String>> = paths_named(code)
                .into_iter()
                .filter_map(|path| absolute(&path, module))
                .filter_map(|path| self.defining(&path))
                .filter(|target| target != module)
                .collect();
            edges.insert(module.clone(), named);
        }
        edges
    }

    /// The longest module path that is a prefix of `path`: the file that defines what it names.
    fn defining(&self, path: &[String]) -> Option<Vec<String>> {
        (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| self.modules.contains_key(prefix))
    }
}

/// Whether a file holds only tests: `tests.rs`, `*_tests.rs`, or anything under a `tests/` folder.
fn is_test_file(src: &Path, file: &Path) -> bool {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let name = file.file_stem().map(|s| s.to_string_lossy().into_owned());
    relative.components().any(|c| c.as_os_str() == "tests")
        || name.is_some_and(|n| n == "tests" || n.ends_with("_tests"))
}

/// The code before a file's inline `#[cfg(test)]` test module, which by custom ends the file.
fn without_tests(code: &str) -> String {
    match code.find("#[cfg(test)]") {
        Some(i) => code[..i].to_owned(),
        None => code.to_owned(),
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are module `a::b`; `src/lib.rs` is the crate root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if parts
        .last()
        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
    {
        parts.pop();
    }
    parts
}

/// Every path the code names starting with `crate`, `super` or `self`, groups expanded:
/// `crate::a::{b, c::d}` names `crate::a::b` and `crate::a::c::d`.
pub fn paths_named(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(start) {
            let boundary = i == 0 || {
                let c = bytes[i - 1] as char;
                !(c.is_alphanumeric() || c == '_' || c == ':')
            };
            if boundary {
                let first = start.trim_end_matches("::").to_owned();
                expand(&code[i + start.len()..], vec![first], &mut paths);
            }
        }
    }
    paths
}

/// Reads one path (or group) from `rest`, prefixed by `prefix`, into `out`.
fn expand(rest: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let rest = rest.trim_start();
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 0;
        let mut item = String::new();
        let mut items = Vec::new();
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(std::mem::take(&mut item));
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        items.push(item);
        for item in items.iter().filter(|i| !i.trim().is_empty()) {
            expand(item, prefix.clone(), out);
        }
        return;
    }
    let word: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '*')
        .collect();
    if word.is_empty() || word == "*" || word == "self" {
        out.push(prefix);
        return;
    }
    let mut path = prefix;
    path.push(word.clone());
    let after = &rest[word.len()..];
    match after.strip_prefix("::") {
        Some(more) if word.starts_with(|c: char| c.is_lowercase()) && word != "super" => {
            expand(more, path, out)
        }
        Some(more) if word == "super" => expand(more, path, out),
        _ => out.push(path),
    }
}

/// A named path as a path from the crate root (`super` is the module above the file's own).
fn absolute(path: &[String], module: &[String]) -> Option<Vec<String>> {
    let (first, rest) = path.split_first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module[..module.len().checked_sub(1)?].to_vec(),
        _ => return None,
    };
    let mut rest = rest.iter().peekable();
    while rest.peek().is_some_and(|s| *s == "super") {
        rest.next();
        base.pop()?;
    }
    base.extend(rest.cloned());
    Some(base)
}

/// A circle of modules, if the edges hold one: the modules in order, the first repeated last.
pub fn find_circle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut circle: Vec<String> = stack[from..].iter().map(|m| display(m)).collect();
                circle.push(display(node));
                return Some(circle);
            }
            None => {}
        }
        marks.insert(node.clone(), Mark::Open);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, edges, marks, stack) {
                return Some(circle);
            }
        }
        stack.pop();
        marks.insert(node.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        let mut stack = Vec::new();
        if let Some(circle) = visit(node, edges, &mut marks, &mut stack) {
            return Some(circle);
        }
    }
    None
}
