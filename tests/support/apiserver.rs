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

impl Drop for KubeServer {
    fn drop(&mut self) {
        // SIGTERM lets start.sh stop etcd and kube-apiserver.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
