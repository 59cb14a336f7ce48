//! The architecture, checked: the core is pure (no AWS SDK, no kube, no tokio, no clock, no
//! randomness, no I/O, in its manifest, its dependency tree and its source), and the adapters in
//! `src/` depend on each other only in the documented directions, so there is no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file without its comments (so prose may name anything).
fn code_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The packages a manifest's `[dependencies]` table names.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_table = false;
    let mut names = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[dependencies]";
            continue;
        }
        if in_table && let Some((name, _)) = line.split_once('=') {
            names.push(name.trim().to_owned());
        }
    }
    names
}

#[test]
fn the_core_depends_only_on_data_hashing_and_time_arithmetic() {
    let manifest = std::fs::read_to_string(root().join("core/Cargo.toml")).unwrap();
    let allowed = ["croner", "jiff", "schemars", "serde", "serde_json", "sha2"];
    let deps = dependencies(&manifest);
    assert!(
        !deps.is_empty(),
        "no [dependencies] read from core/Cargo.toml"
    );
    for dep in &deps {
        assert!(
            allowed.contains(&dep.as_str()),
            "core/Cargo.toml depends on `{dep}`; the core may use only {allowed:?}"
        );
    }
}

#[test]
fn the_cores_dependency_tree_has_no_aws_kube_tokio_or_randomness() {
    let output = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["tree", "--offline", "--locked", "-p", "sequencer-core"])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let packages: BTreeSet<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        packages.contains("sequencer-core") && packages.contains("jiff"),
        "{tree}"
    );
    let forbidden = [
        "aws-",
        "kube",
        "k8s-openapi",
        "tokio",
        "hyper",
        "rand",
        "getrandom",
    ];
    for package in &packages {
        assert!(
            !forbidden.iter().any(|f| package.starts_with(f)),
            "the core pulls in `{package}`:\n{tree}"
        );
    }
}

#[test]
fn the_cores_source_names_no_adapter_clock_randomness_or_io() {
    let forbidden = [
        "aws_",
        "kube",
        "k8s_openapi",
        "tokio",
        "futures",
        "SystemTime",
        "Instant",
        "Timestamp::now",
        "Zoned::now",
        "rand::",
        "std::fs",
        "std::net",
        "std::env",
        "std::io",
        "std::process",
        "std::thread",
        "println!",
        "eprintln!",
    ];
    // The time zone database is I/O (the system's zoneinfo): the adapters look zones up and hand
    // them in. Tests may read it.
    let zone_lookups = ["TimeZone::get", "TimeZone::system", "tz::db"];
    let files = rust_files(&root().join("core/src"));
    assert!(files.len() > 10, "{files:?}");
    for file in files {
        let code = code_of(&file);
        let is_test = file.to_string_lossy().ends_with("tests.rs");
        for word in forbidden
            .iter()
            .chain(zone_lookups.iter().filter(|_| !is_test))
        {
            assert!(
                !code.contains(word),
                "{} names `{word}`: the core must stay pure",
                file.display()
            );
        }
    }
}

/// The top-level module of `src/` a file belongs to.
fn module_of(file: &Path) -> String {
    let relative = file.strip_prefix(root().join("src")).unwrap();
    let first = relative.components().next().unwrap().as_os_str();
    first.to_string_lossy().trim_end_matches(".rs").to_owned()
}

#[test]
fn adapters_depend_on_each_other_only_downwards() {
    // What each module of src/ may use besides the core (see src/lib.rs).
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("batch", &[][..]),
        ("ecs", &[][..]),
        ("shutdown", &[][..]),
        ("source", &["ecs"][..]),
        ("drive", &["ecs"][..]),
        (
            "controller",
            &["batch", "source", "ecs", "drive", "shutdown"][..],
        ),
        (
            "cli",
            &["batch", "source", "ecs", "drive", "shutdown", "controller"][..],
        ),
    ]);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root().join("src")) {
        let module = module_of(&file);
        if module == "lib" || module == "main" {
            continue;
        }
        let allowed_here = allowed
            .get(module.as_str())
            .unwrap_or_else(|| panic!("src/{module} is not in the map of src/lib.rs: add it"));
        let code = code_of(&file);
        for (i, _) in code.match_indices("crate::") {
            let used: String = code[i + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if used == module || used.is_empty() {
                continue;
            }
            assert!(
                allowed_here.contains(&used.as_str()),
                "{} uses crate::{used}; src/{module} may use only {allowed_here:?}",
                file.display()
            );
            edges.entry(module.clone()).or_default().insert(used);
        }
    }
    // The permitted edges themselves form no cycle (a module is only allowed what sits below it).
    fn reaches(edges: &BTreeMap<&str, &[&str]>, from: &str, to: &str, depth: usize) -> bool {
        depth < 16
            && edges.get(from).is_some_and(|next| {
                next.iter()
                    .any(|n| *n == to || reaches(edges, n, to, depth + 1))
            })
    }
    for module in allowed.keys() {
        assert!(
            !reaches(&allowed, module, module, 0),
            "{module} can reach itself"
        );
    }
    assert!(
        edges.get("cli").is_some_and(|e| e.contains("controller")),
        "the scan found no use of the controller by the CLI: {edges:?}"
    );
}
