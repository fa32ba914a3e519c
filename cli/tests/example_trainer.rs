//! The example trainer (`examples/trainer/train.py`) run as local processes, no cluster:
//! two ranks on 127.0.0.1 all-reduce their gradients and drive the loss down; a rank that
//! fails takes its peer down with it instead of leaving it hanging, and the rerun resumes
//! from rank 0's checkpoint and ends exactly where an uninterrupted run ends.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/trainer/train.py")
}

/// False, with a loud message, when python3 cannot be started.
fn have_python() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: python3 is not installed; the example trainer cannot run");
    }
    found
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// Runs `world` ranks of the trainer with `env` and returns each rank's output, rank order.
fn run_ranks(world: usize, env: &[(&str, &str)]) -> Vec<Output> {
    let port = free_port().to_string();
    let children: Vec<_> = (0..world)
        .rev() // the workers start first and must wait for rank 0
        .map(|rank| {
            Command::new("python3")
                .arg(script())
                .env("RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                // The trainer's own timeouts keep a broken run from hanging the test.
                .env("CONNECT_TIMEOUT", "60")
                .env("PEER_TIMEOUT", "60")
                .envs(env.iter().copied())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("python3 starts")
        })
        .collect();
    let mut outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("trainer output"))
        .collect();
    outputs.reverse();
    outputs
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `rank R/W epoch E loss L` lines of one rank's output: epoch -> loss.
fn losses(output: &Output) -> BTreeMap<u32, f64> {
    stdout(output)
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["rank", _, "epoch", epoch, "loss", loss] => {
                    Some((epoch.parse().ok()?, loss.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

fn result_line(output: &Output) -> String {
    stdout(output)
        .lines()
        .find(|l| l.starts_with("result: "))
        .unwrap_or_else(|| panic!("no result line\n{}", describe(output)))
        .to_string()
}

#[test]
fn two_ranks_train_together_and_the_loss_goes_down() {
    if !have_python() {
        return;
    }
    let outputs = run_ranks(2, &[("EPOCHS", "10")]);
    for output in &outputs {
        assert!(output.status.success(), "{}", describe(output));
        let result = result_line(output);
        assert!(result.ends_with(" epochs=10 world_size=2"), "{result}");
    }
    let (rank0, rank1) = (losses(&outputs[0]), losses(&outputs[1]));
    assert_eq!(
        rank0.keys().copied().collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    // The loss is all-reduced, so both ranks report the same global value.
    assert_eq!(rank0, rank1);
    assert!(rank0[&10] < rank0[&1] / 10.0, "{rank0:?}");
    assert!(
        rank0
            .values()
            .zip(rank0.values().skip(1))
            .all(|(a, b)| b < a),
        "{rank0:?}"
    );
}

#[test]
fn a_failed_rank_stops_its_peer_and_the_rerun_resumes_from_the_checkpoint() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoints = dir.path().to_str().expect("utf-8 path");
    let env = [
        ("EPOCHS", "6"),
        ("CHECKPOINT_DIR", checkpoints),
        ("FAIL_AT_EPOCH", "3"),
        ("FAIL_RANK", "1"),
    ];

    let failed = run_ranks(2, &env);
    assert_eq!(failed[1].status.code(), Some(1), "{}", describe(&failed[1]));
    assert!(stdout(&failed[1]).contains("epoch 3 simulated failure"));
    assert!(!failed[0].status.success(), "{}", describe(&failed[0]));
    let stderr0 = String::from_utf8_lossy(&failed[0].stderr);
    assert!(stderr0.contains("error: rank 0: lost rank 1"), "{stderr0}");
    assert!(dir.path().join("failed-once").exists());
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("checkpoint.json")).expect("rank 0 wrote a checkpoint"),
    )
    .expect("checkpoint is JSON");
    assert_eq!(saved["epoch"], 2);

    let resumed = run_ranks(2, &env);
    for output in &resumed {
        assert!(output.status.success(), "{}", describe(output));
        let text = stdout(output);
        let epoch: u32 = text
            .lines()
            .find_map(|l| {
                l.split_once("resumed from epoch ")
                    .map(|(_, e)| e.to_string())
            })
            .unwrap_or_else(|| panic!("no resume line\n{}", describe(output)))
            .parse()
            .expect("resumed epoch is a number");
        assert!(epoch >= 2, "{text}");
        let trained: Vec<u32> = losses(output).keys().copied().collect();
        assert_eq!(trained, (epoch + 1..=6).collect::<Vec<_>>(), "{text}");
        assert!(result_line(output).ends_with(" epochs=6 world_size=2"));
    }

    // The weights came back from the checkpoint: the run ends where an uninterrupted one does.
    let uninterrupted = run_ranks(2, &[("EPOCHS", "6")]);
    assert!(
        uninterrupted[0].status.success(),
        "{}",
        describe(&uninterrupted[0])
    );
    assert_eq!(result_line(&resumed[0]), result_line(&uninterrupted[0]));
}

#[test]
fn rank_zero_names_the_ranks_that_never_connected() {
    if !have_python() {
        return;
    }
    let port = free_port().to_string();
    let output = Command::new("python3")
        .arg(script())
        .envs([
            ("RANK", "0"),
            ("WORLD_SIZE", "3"),
            ("MASTER_PORT", port.as_str()),
            ("CONNECT_TIMEOUT", "1"),
        ])
        .output()
        .expect("python3 starts");
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ranks [1, 2] did not connect to port"),
        "{stderr}"
    );
}
