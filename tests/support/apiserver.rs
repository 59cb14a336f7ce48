//! A real kube-apiserver + etcd for tests (tests/kube/start.sh), on free 127.0.0.1 ports.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct KubeServer {
    child: Child,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl KubeServer {
    pub fn start() -> KubeServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(super::repo_root().join("tests/kube/start.sh"))
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/kube/start.sh");
        let stdout = child.stdout.take().expect("piped");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read start.sh output");
        let kubeconfig = line
            .trim()
            .strip_prefix("kube-apiserver ready ")
            .map(PathBuf::from);
        let Some(kubeconfig) = kubeconfig else {
            let _ = child.kill();
            panic!("kube-apiserver did not start: {line:?}");
        };
        KubeServer {
            child,
            kubeconfig,
            _dir: dir,
        }
    }

    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }
}

impl KubeServer {
    /// Restarts kube-apiserver alone (same port, same etcd) and waits until it answers again.
    pub fn restart_apiserver(&self) {
        let restarts = self._dir.path().join("restarts.log");
        let before = std::fs::read_to_string(&restarts)
            .unwrap_or_default()
            .lines()
            .count();
        Command::new("kill")
            .args(["-USR1", &self.child.id().to_string()])
            .status()
            .expect("signal start.sh");
        for _ in 0..600 {
            let now = std::fs::read_to_string(&restarts)
                .unwrap_or_default()
                .lines()
                .count();
            if now > before && self.ready() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("kube-apiserver did not come back after a restart");
    }

    /// Whether /readyz answers ok.
    pub fn ready(&self) -> bool {
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap_or_default();
        let server = text
            .lines()
            .find_map(|l| l.split("server: \"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let token = text
            .lines()
            .find_map(|l| l.split("token: \"").nth(1))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let ca = self._dir.path().join("ca.crt");
        Command::new("curl")
            .args(["-sf", "--max-time", "2", "--cacert"])
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("{server}/readyz"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// etcd's client URL.
    pub fn etcd_endpoint(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("etcd-endpoint"))
            .expect("etcd-endpoint")
            .trim()
            .to_owned()
    }

    /// Compacts etcd's history up to its current revision (through etcd's JSON gateway), so a
    /// watch from an older resourceVersion answers 410 Gone. Returns the revision compacted to.
    pub fn compact_etcd(&self) -> i64 {
        let endpoint = self.etcd_endpoint();
        let post = |path: &str, body: &str| -> serde_json::Value {
            let out = Command::new("curl")
                .args(["-sf", "--max-time", "10", "-X", "POST", "-d", body])
                .arg(format!("{endpoint}{path}"))
                .output()
                .expect("curl");
            assert!(out.status.success(), "etcd {path} failed");
            serde_json::from_slice(&out.stdout).expect("etcd answers JSON")
        };
        // The current revision, from a range read of one key ("/" in base64: Lw==).
        let range = post("/v3/kv/range", r#"{"key":"Lw==","limit":1}"#);
        let revision: i64 = range["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("a revision");
        post(
            "/v3/kv/compaction",
            &format!(r#"{{"revision":"{revision}","physical":true}}"#),
        );
        revision
    }
}

impl Drop for KubeServer {
    fn drop(&mut self) {
        // SIGTERM lets start.sh stop etcd and kube-apiserver.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Applies `crd` (server-side) and waits until the API server has established it.
pub async fn install_crd(
    client: &kube::Client,
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Api, Patch, PatchParams, ResourceExt};
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("sequencer-test").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("apply the CRD {name}: {e}"));
    for _ in 0..200 {
        let current = crds.get(&name).await.expect("read the CRD back");
        let established = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the CRD {name} never became Established");
}
