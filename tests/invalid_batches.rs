//! Every file in tests/fixtures/invalid is refused before anything runs: exit 2, a message that
//! names the place (file:line:column, step, key path) and what is allowed, and no AWS call.
//! Each file declares what must be printed in `# expect: ` lines (after the file name).

mod support;

use support::*;

#[test]
fn every_invalid_batch_is_refused_with_its_place_and_nothing_is_called() {
    let emu = Emulator::start();
    let dir = repo_root().join("tests/fixtures/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let expected: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} declares no expectation",
            file.display()
        );
        let relative = file.strip_prefix(repo_root()).unwrap();
        for command in [&["run"][..], &["validate"][..]] {
            let run = run(emu.sequencer().args(command).arg(relative));
            assert_eq!(run.code, 2, "{} ({command:?}): {run:?}", relative.display());
            for fragment in &expected {
                let wanted = format!("{}:{fragment}", relative.display());
                let wanted = if fragment.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    wanted
                } else {
                    fragment.to_string()
                };
                assert!(
                    run.stderr.contains(&wanted),
                    "{}: expected {wanted:?} in:\n{}",
                    relative.display(),
                    run.stderr
                );
            }
            assert!(
                run.stdout.is_empty(),
                "nothing is printed as progress: {run:?}"
            );
        }
    }
    assert!(
        emu.calls().is_empty(),
        "no AWS call was made: {:?}",
        emu.calls()
    );
}

#[test]
fn no_batch_at_all_is_an_input_error() {
    let emu = Emulator::start();
    let run = run(emu.sequencer().arg("run"));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("set SEQUENCER_YAML_S3_PATH"), "{run:?}");
    let run = support::run(emu.sequencer().args(["run", "does/not/exist.yml"]));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("cannot read does/not/exist.yml"),
        "{run:?}"
    );
    let run = support::run(emu.sequencer().args(["s3://only-a-bucket"]));
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("expected s3://BUCKET/KEY"), "{run:?}");
}

#[test]
fn validate_accepts_the_examples_and_the_seed_fixture_without_calling_aws() {
    let emu = Emulator::start();
    for file in [
        "examples/nightly-etl.yml",
        "tests/fixtures/seed/valid.yml",
        "tests/fixtures/seed/readme-example.yml",
    ] {
        let run = run(emu.sequencer().args(["validate", file]));
        assert_eq!(run.code, 0, "{file}: {run:?}");
        assert!(run.stdout.contains(": valid,"), "{run:?}");
    }
    let run = run(emu.sequencer().args([
        "validate",
        "--output",
        "json",
        "tests/fixtures/seed/valid.yml",
    ]));
    let steps: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(steps[1]["parameters"]["launchType"], "FARGATE");
    assert_eq!(steps[1]["parameters"]["taskDefinition"], "test-task-def:2");
    assert_eq!(steps[0]["ignoreFailure"], false);
    assert!(emu.calls().is_empty());
}
