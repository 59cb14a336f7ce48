//! The container image, built from the repository's Dockerfile (tests/image/build.sh) and run as a
//! user runs it: non-root, read-only root filesystem, host network to reach the emulator and the
//! test kube-apiserver on 127.0.0.1.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use support::world::{World, http_address, http_get, log_lines, step};
use support::{Emulator, Run, finish, installed, repo_root};

/// The image's name: `SEQUENCER_TEST_IMAGE` (tests/run.sh builds it first), else what
/// tests/image/build.sh builds (cached layers: quick once built).
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| installed("SEQUENCER_TEST_IMAGE", "tests/image/build.sh"))
}

/// The container engine with the configuration the image was built with.
fn engine() -> Command {
    Command::new(repo_root().join("tests/image/engine.sh"))
}

/// A container name of this test process, removed when dropped (also when a test fails).
struct Name(String);

impl Name {
    fn new(what: &str) -> Name {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Name(format!("sequencer-test-{what}-{}-{n}", std::process::id()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = engine()
            .args(["rm", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// `engine run --rm --read-only` of the image with `args`; the container's exit and output.
fn run_image(options: &[String], args: &[&str]) -> Run {
    let name = Name::new("run");
    let output = engine()
        .args(["run", "--rm", "--read-only", "--name", &name.0])
        .args(options)
        .arg(image())
        .args(args)
        .output()
        .expect("run the container engine");
    finish(output)
}

/// `-e` options giving the container the emulator as its AWS.
fn aws_options(emu: &Emulator) -> Vec<String> {
    [
        format!("AWS_ENDPOINT_URL={}", emu.endpoint),
        "AWS_REGION=us-east-1".to_owned(),
        "AWS_ACCESS_KEY_ID=emulator".to_owned(),
        "AWS_SECRET_ACCESS_KEY=emulator".to_owned(),
        "AWS_EC2_METADATA_DISABLED=true".to_owned(),
    ]
    .into_iter()
    .flat_map(|e| ["-e".to_owned(), e])
    .collect()
}

#[test]
fn the_image_runs_as_uid_65532_on_a_read_only_root_and_reports_its_version() {
    let user = finish(
        engine()
            .args(["image", "inspect", "--format", "{{.Config.User}}", image()])
            .output()
            .expect("inspect"),
    );
    assert_eq!(user.stdout.trim(), "65532:65532", "{user:?}");

    let id = run_image(&strings(&["--entrypoint", "/usr/bin/id"]), &[]);
    assert_eq!(id.code, 0, "{id:?}");
    assert!(
        id.stdout.starts_with("uid=65532(") && id.stdout.contains(" gid=65532("),
        "the image's process is not uid/gid 65532: {id:?}"
    );

    let version = run_image(&[], &["--version"]);
    assert_eq!(version.code, 0, "{version:?}");
    assert_eq!(
        version.stdout.trim(),
        format!("sequencer {}", env!("CARGO_PKG_VERSION")),
        "{version:?}"
    );

    // The root filesystem really is read-only in these runs, so the runs below prove the binary
    // needs no writable path (the chart sets readOnlyRootFilesystem).
    let write = run_image(
        &strings(&["--entrypoint", "/bin/sh"]),
        &["-c", "touch /usr/local/bin/probe"],
    );
    assert_ne!(write.code, 0, "the root filesystem was writable: {write:?}");
    // TLS to AWS and to the API server needs the system's CA bundle.
    let bundle = run_image(
        &strings(&["--entrypoint", "/usr/bin/test"]),
        &["-s", "/etc/ssl/certs/ca-certificates.crt"],
    );
    assert_eq!(bundle.code, 0, "the image has no CA bundle: {bundle:?}");
}

/// The seed's contract: SEQUENCER_YAML_S3_PATH and no arguments run that batch; exit 0 when it
/// succeeds, 1 when a step fails (and nothing after the failed step runs).
#[tokio::test(flavor = "multi_thread")]
async fn with_sequencer_yaml_s3_path_and_no_arguments_the_image_runs_that_batch() {
    let emu = Emulator::with_jobs(&[
        (
            "quick",
            &[("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "0")],
        ),
        (
            "bad",
            &[("SEQ_EMU_SECONDS", "1"), ("SEQ_EMU_EXIT_CODE", "3")],
        ),
    ])
    .await;
    let s3 = emu.s3().await;
    s3.create_bucket().bucket("batches").send().await.unwrap();
    let put = |key: &'static str, body: String| {
        let s3 = s3.clone();
        async move {
            s3.put_object()
                .bucket("batches")
                .key(key)
                .body(body.into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    };
    let one = |name: &str, family: &str| support::batch_step(name, &format!("{family}:1"), "");
    put("good.yml", one("extract", "quick") + &one("load", "quick")).await;
    put("bad.yml", one("transform", "bad") + &one("export", "quick")).await;

    let with_path = |path: &str| {
        let mut options = aws_options(&emu);
        options.extend(strings(&[
            "--network",
            "host",
            "-e",
            "SEQUENCER_SLEEP_BETWEEN_CHECKS=1",
            "-e",
        ]));
        options.push(format!("SEQUENCER_YAML_S3_PATH={path}"));
        options
    };

    let good = run_image(&with_path("s3://batches/good.yml"), &[]);
    assert_eq!(good.code, 0, "{good:?}");
    assert_eq!(
        launched_families(&emu),
        ["quick:1", "quick:1"],
        "the good batch ran both steps: {good:?}"
    );

    let bad = run_image(&with_path("s3://batches/bad.yml"), &[]);
    assert_eq!(bad.code, 1, "a failing batch exits 1: {bad:?}");
    assert_eq!(
        launched_families(&emu),
        ["quick:1", "quick:1", "bad:1"],
        "the step after the failed one was launched: {bad:?}"
    );
    assert!(
        bad.stdout
            .contains("[1/2 transform] FAILED [EssentialContainerExited]")
            && bad.stdout.contains("container app exited with 3"),
        "the failure is not explained: {bad:?}"
    );
}

/// The task definitions RunTask was asked for, in order.
fn launched_families(emu: &Emulator) -> Vec<String> {
    emu.calls_of("RunTask")
        .iter()
        .map(|c| {
            c["request"]["taskDefinition"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// The test kube-apiserver's kubeconfig and CA, copied to a directory the container's user (65532)
/// may read, with the CA's path as the container sees it.
fn kubeconfig_for_container(kubeconfig: &Path, mount: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let source = kubeconfig.parent().expect("kubeconfig's directory");
    let text = std::fs::read_to_string(kubeconfig).expect("read kubeconfig");
    let text = text.replace(source.to_str().expect("utf-8 path"), mount);
    for (name, body) in [
        ("kubeconfig", text.into_bytes()),
        (
            "ca.crt",
            std::fs::read(source.join("ca.crt")).expect("ca.crt"),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

/// `controller` in the image with the chart's flags, talking to the test kube-apiserver.
fn controller_container(world: &World, name: &Name, kube: &Path, log: &Path) -> Child {
    let mut options = aws_options(&world.emu);
    options.extend(strings(&[
        "--network",
        "host",
        "-v",
        &format!("{}:/kube:ro", kube.display()),
        "-e",
        "KUBECONFIG=/kube/kubeconfig",
        "-e",
        "RUST_LOG=sequencer=debug,warn",
        "-e",
        &format!("POD_NAME={}", name.0),
        "-e",
        "POD_NAMESPACE=default",
    ]));
    engine()
        .args(["run", "--rm", "--read-only", "--name", &name.0])
        .args(&options)
        .arg(image())
        // The chart's arguments (values.yaml), with leader election on and a free port.
        .args([
            "controller",
            "--http-address=127.0.0.1:0",
            "--log-format=json",
            "--poll-interval=1",
            "--leader-election",
            "--lease-name=sequencer-controller",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start the controller's container")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_controller_in_the_image_completes_a_sequence_and_stops_on_sigterm() {
    let world = World::start().await;
    let kube = kubeconfig_for_container(&world.server.kubeconfig, "/kube");
    let name = Name::new("controller");
    let log: PathBuf = world.logs.path().join("controller-in-image.log");
    let mut child = controller_container(&world, &name, kube.path(), &log);

    let address = http_address(&log);
    world
        .emu
        .wait_for(Duration::from_secs(60), "the controller's /readyz", |_| {
            (http_get(&address, "/readyz").0 == 200).then_some(())
        });

    world
        .create(
            "nightly",
            json!([step("extract", "quick"), step("load", "quick")]),
        )
        .await;
    let done = world
        .wait_condition("nightly", "Complete", Duration::from_secs(120))
        .await;
    let status = done.status.expect("status");
    assert_eq!(status.progress.as_deref(), Some("2/2"), "{status:?}");
    assert_eq!(
        world.tasks_by_started_by().await.values().sum::<usize>(),
        2,
        "each step launched exactly once"
    );

    // SIGTERM to the container's first process (the controller is PID 1): it ends cleanly.
    let stop = engine()
        .args(["stop", "--time", "30", &name.0])
        .output()
        .expect("stop");
    assert!(stop.status.success(), "{:?}", finish(stop));
    let exit = child.wait().expect("wait for the container");
    assert_eq!(
        exit.code(),
        Some(0),
        "the controller did not end cleanly on SIGTERM: {:#?}",
        log_lines(&log)
    );
}
