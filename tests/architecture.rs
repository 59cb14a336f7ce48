//! The architecture, checked: the core is pure (no AWS SDK, no kube, no tokio, no clock, no
//! randomness, no I/O, in its manifest, its dependency tree and its source); the adapters in
//! `src/` and the controller's rooms depend on each other only in the documented directions; and
//! no files, in `src/` or in the core, name each other in a circle. The checks are shown to fail
//! on a circle or a wrong direction planted in each room.

#[path = "architecture/graph.rs"]
mod graph;

use graph::{Crate, display, find_circle};

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
        ("api", &[][..]),
        ("batch", &[][..]),
        ("ecs", &[][..]),
        ("shutdown", &[][..]),
        ("source", &["ecs"][..]),
        ("drive", &["ecs"][..]),
        (
            "controller",
            &["api", "batch", "source", "ecs", "drive", "shutdown"][..],
        ),
        (
            "cli",
            &[
                "api",
                "batch",
                "source",
                "ecs",
                "drive",
                "shutdown",
                "controller",
            ][..],
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

/// What each room of the controller may use: other rooms, and the modules of `src/` (see
/// `src/controller/mod.rs`). `run` is the wiring, the one file that knows every room.
const ROOMS: &[(&str, &[&str])] = &[
    ("error", &[]),
    ("runtime", &["ecs", "api"]),
    ("tenancy", &["ecs", "api"]),
    ("tasks", &["ecs", "api", "runtime"]),
    ("schedule", &["api", "runtime", "error"]),
    (
        "sequence",
        &[
            "drive", "ecs", "source", "batch", "api", "runtime", "tasks", "tenancy", "error",
        ],
    ),
    (
        "run",
        &[
            "ecs", "api", "shutdown", "runtime", "tasks", "tenancy", "sequence", "schedule",
            "error",
        ],
    ),
];

/// The room of a module of `src/` (`controller::tasks::poller` is in `tasks`), or its top-level
/// module outside the controller.
fn room_of(module: &[String]) -> Option<String> {
    match module {
        [first, room, ..] if first == "controller" => Some(room.clone()),
        [first] if first == "controller" => None,
        [first, ..] => Some(first.clone()),
        [] => None,
    }
}

/// Every use by a controller room of something outside it that the room may not use.
fn room_violations(krate: &Crate) -> Vec<String> {
    let rooms: BTreeMap<&str, &[&str]> = ROOMS.iter().copied().collect();
    let mut violations = Vec::new();
    for (from, targets) in krate.edges() {
        if from.first().map(String::as_str) != Some("controller") {
            continue;
        }
        let Some(room) = room_of(&from) else { continue };
        let Some(allowed) = rooms.get(room.as_str()) else {
            violations.push(format!(
                "src/controller/{room} is not in the map of rooms (tests/architecture.rs, src/controller/mod.rs): add it"
            ));
            continue;
        };
        for target in targets {
            let Some(used) = room_of(&target) else {
                continue;
            };
            if used != room && !allowed.contains(&used.as_str()) {
                violations.push(format!(
                    "{} uses {}; the room {room} may use only {allowed:?}",
                    display(&from),
                    display(&target)
                ));
            }
        }
    }
    violations
}

fn src_crate() -> Crate {
    Crate::read(&root().join("src"))
}

fn core_crate() -> Crate {
    Crate::read(&root().join("core/src"))
}

#[test]
fn the_controllers_rooms_depend_on_each_other_only_as_documented() {
    let krate = src_crate();
    let edges = krate.edges();
    let rooms: BTreeSet<String> = edges
        .keys()
        .filter(|m| m.first().map(String::as_str) == Some("controller"))
        .filter_map(|m| room_of(m))
        .collect();
    let mapped: BTreeSet<String> = ROOMS.iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(rooms, mapped, "the rooms found and the rooms mapped differ");
    assert_eq!(room_violations(&krate), Vec::<String>::new());
    // The scan sees the wiring use every room, so it reads the imports at all.
    let wiring = &edges[&vec!["controller".to_owned(), "run".to_owned()]];
    for room in ["runtime", "tasks", "tenancy", "sequence", "schedule"] {
        assert!(
            wiring.iter().any(|m| room_of(m).as_deref() == Some(room)),
            "run.rs uses no {room}: {wiring:?}"
        );
    }
}

#[test]
fn no_files_name_each_other_in_a_circle() {
    for (name, krate) in [("src", src_crate()), ("core/src", core_crate())] {
        let edges = krate.edges();
        assert!(
            edges.values().map(BTreeSet::len).sum::<usize>() > 20,
            "{name}: the scan found almost no imports: {edges:?}"
        );
        if let Some(circle) = find_circle(&edges) {
            panic!(
                "{name}: these files name each other in a circle: {}",
                circle.join(" -> ")
            );
        }
    }
}

/// A copy of `krate`'s files with `b` naming `a` by a path and `a` naming `b` by another.
fn with_circle(src: &Path, krate: &Crate, a: &[String], b: &[String]) -> Crate {
    let files = krate
        .modules
        .iter()
        .map(|(module, (file, code))| {
            let code = if module == a {
                format!("use crate::{}::Planted;\n{code}", b.join("::"))
            } else if module == b && a[..a.len() - 1] == b[..b.len() - 1] {
                format!("use super::{}::{{Planted, Other}};\n{code}", a[a.len() - 1])
            } else if module == b {
                format!(
                    "fn planted() {{ crate::{}::planted(); }}\n{code}",
                    a.join("::")
                )
            } else {
                code.clone()
            };
            (file.clone(), code)
        })
        .collect();
    Crate::from_files(src, files)
}

/// Two files of a room (or folder) that do not name each other today.
fn two_files_in(krate: &Crate, prefix: &[&str]) -> (Vec<String>, Vec<String>) {
    let inside: Vec<&Vec<String>> = krate
        .modules
        .keys()
        .filter(|m| m.len() == prefix.len() + 1 && m.iter().zip(prefix).all(|(a, b)| a == b))
        .collect();
    assert!(
        inside.len() >= 2,
        "{prefix:?} has fewer than two files: {inside:?}"
    );
    (inside[0].clone(), inside[inside.len() - 1].clone())
}

#[test]
fn a_circle_planted_in_any_room_or_in_the_core_fails_the_check() {
    let src = src_crate();
    let mut planted = Vec::new();
    for room in ["runtime", "tasks", "tenancy", "sequence", "schedule"] {
        planted.push(("src", two_files_in(&src, &["controller", room])));
    }
    planted.push(("src", two_files_in(&src, &["api"])));
    let core = core_crate();
    planted.push(("core/src", two_files_in(&core, &[])));
    planted.push(("core/src", two_files_in(&core, &["engine"])));
    for (dir, (a, b)) in planted {
        let krate = if dir == "src" { &src } else { &core };
        assert_eq!(
            find_circle(&krate.edges()),
            None,
            "{dir} has a circle already"
        );
        let edited = with_circle(&root().join(dir), krate, &a, &b);
        let circle = find_circle(&edited.edges());
        let circle = circle.unwrap_or_else(|| {
            panic!("a circle planted between {a:?} and {b:?} in {dir} was not found")
        });
        assert!(
            circle.contains(&display(&a)) && circle.contains(&display(&b)),
            "{circle:?}"
        );
    }
}

#[test]
fn a_use_against_the_rooms_directions_fails_the_check() {
    let src = src_crate();
    // Each room reaching up into a room it may not use.
    let plants = [
        ("runtime", "sequence"),
        ("tasks", "sequence"),
        ("tenancy", "tasks"),
        ("schedule", "sequence"),
        ("sequence", "schedule"),
    ];
    for (room, forbidden) in plants {
        let (from, _) = two_files_in(&src, &["controller", room]);
        let (target, _) = two_files_in(&src, &["controller", forbidden]);
        let files = src
            .modules
            .iter()
            .map(|(module, (file, code))| {
                let code = if *module == from {
                    format!("use crate::{}::Planted;\n{code}", target.join("::"))
                } else {
                    code.clone()
                };
                (file.clone(), code)
            })
            .collect();
        let violations = room_violations(&Crate::from_files(&root().join("src"), files));
        assert!(
            violations
                .iter()
                .any(|v| v.contains(&display(&from)) && v.contains(&display(&target))),
            "{room} using {forbidden} was not caught: {violations:?}"
        );
    }
}

#[test]
fn paths_are_read_through_groups_and_super() {
    let code = "use crate::a::{b, c::{d, E}};\nuse super::f::G;\nlet x = self::h::i();";
    let mut named = graph::paths_named(code);
    named.sort();
    let expected: Vec<Vec<String>> = [
        vec!["crate", "a", "b"],
        vec!["crate", "a", "c", "E"],
        vec!["crate", "a", "c", "d"],
        vec!["self", "h", "i"],
        vec!["super", "f", "G"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(named, expected);
}
