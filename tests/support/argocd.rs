//! Runs deploy/argocd/health.lua as Argo CD does (Lua 5.1, the object as global `obj`).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// A Lua 5.1 table constructor for a JSON value (strings escaped byte by byte).
pub fn lua_literal(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => {
            let mut out = String::from("\"");
            for byte in s.bytes() {
                match byte {
                    b'"' | b'\\' => out.push_str(&format!("\\{}", byte as char)),
                    0x20..=0x7e => out.push(byte as char),
                    _ => out.push_str(&format!("\\{byte}")),
                }
            }
            out.push('"');
            out
        }
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(lua_literal).collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "[{}] = {}",
                        lua_literal(&Value::String(k.clone())),
                        lua_literal(v)
                    )
                })
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// The health status and message health.lua gives `object` (a Sequence).
pub fn health(object: &Value) -> (String, String) {
    health_by("deploy/argocd/health.lua", object)
}

/// The health status and message the check in `script` gives `object`.
pub fn health_by(script: &str, object: &Value) -> (String, String) {
    let check = std::fs::read_to_string(super::repo_root().join(script)).expect(script);
    let script = format!(
        "obj = {}\nlocal function check()\n{}\nend\nlocal hs = check()\nio.write(hs.status, \"\\n\", hs.message, \"\\n\")\n",
        lua_literal(object),
        check
    );
    let mut child = Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lua5.1 (Debian package lua5.1; tests/argocd/install.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "health.lua failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    (
        lines.next().unwrap_or_default().to_owned(),
        lines.next().unwrap_or_default().to_owned(),
    )
}
