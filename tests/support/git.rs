//! Real git servers on 127.0.0.1 for the tests: `git daemon` (git://) and git's smart HTTP
//! (tests/git/http_backend.py; with credentials, over TLS with a test CA and behind Basic
//! authentication, since credentials never travel in the clear), serving bare repositories that a
//! test fills through a working copy.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct GitServer {
    daemon: Child,
    http: Child,
    root: tempfile::TempDir,
    /// `git://127.0.0.1:PORT`
    pub git_base: String,
    /// `http://127.0.0.1:PORT`, or `https://` with credentials.
    pub http_base: String,
    /// The CA that signed the https server's certificate (give it as `SSL_CERT_FILE`).
    pub ca_file: PathBuf,
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.http.kill();
        let _ = self.daemon.wait();
        let _ = self.http.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@127.0.0.1")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@127.0.0.1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A test CA and a certificate for 127.0.0.1 it signed: (certificate, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=sequencer-git-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    (dir.join("server.crt"), dir.join("server.key"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl GitServer {
    /// Both servers over one directory of bare repositories; the HTTP one asks for
    /// `credentials` when given.
    pub fn start(credentials: Option<(&str, &str)>) -> GitServer {
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let daemon = Command::new("git")
            .args([
                "daemon",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                "--export-all",
                "--reuseaddr",
                &format!("--base-path={}", root.path().display()),
            ])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        let mut http = Command::new("python3");
        http.arg(super::repo_root().join("tests/git/http_backend.py"))
            .arg(root.path());
        let ca_file = root.path().join("ca.crt");
        if let Some((user, password)) = credentials {
            http.args(["--user", user, "--password", password]);
            let (cert, key) = certificates(root.path());
            http.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        let mut http = http
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the git http backend");
        let mut line = String::new();
        BufReader::new(http.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let http_base = line
            .trim()
            .strip_prefix("git-http listening on ")
            .unwrap_or_else(|| panic!("the git http backend did not start: {line:?}"))
            .to_owned();
        // git daemon says nothing when it is ready: wait until it accepts connections.
        let address = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&address).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        GitServer {
            daemon,
            http,
            root,
            git_base: format!("git://{address}"),
            http_base,
            ca_file,
        }
    }

    /// A new repository `name`: bare under the servers' root, filled through a working copy.
    pub fn repo(&self, name: &str) -> GitRepo {
        let bare = self.root.path().join(format!("{name}.git"));
        let work = self.root.path().join(format!("{name}-work"));
        std::fs::create_dir_all(&work).unwrap();
        git(
            self.root.path(),
            &["init", "-q", "--bare", "-b", "main", &format!("{name}.git")],
        );
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        GitRepo { work }
    }
}

pub struct GitRepo {
    work: PathBuf,
}

impl GitRepo {
    /// Writes `path` with `text`, commits on the current branch and pushes it; returns the SHA.
    pub fn commit(&self, path: &str, text: &str) -> String {
        let file = self.work.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "-m", &format!("write {path}")],
        );
        git(&self.work, &["push", "-q", "origin", "HEAD"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// An annotated tag on the current commit, pushed.
    pub fn tag(&self, name: &str) {
        git(&self.work, &["tag", "-a", name, "-m", name]);
        git(&self.work, &["push", "-q", "origin", name]);
    }

    /// Switches to branch `name` (made from the current commit if new).
    pub fn branch(&self, name: &str) {
        git(&self.work, &["checkout", "-q", "-B", name]);
    }
}
