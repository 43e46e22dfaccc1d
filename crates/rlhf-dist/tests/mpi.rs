//! Runs the `dist-selftest` binary under `mpirun -np 2`, and alone.
#![cfg(feature = "mpi")]

use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SELFTEST: &str = env!("CARGO_BIN_EXE_dist-selftest");

/// One MPI job at a time: the tests share 2 cores, and ranks spin while they wait.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `cmd` with a deadline (a hung collective must fail the test, not block it), and returns
/// its output; kills it on timeout.
fn run(mut cmd: Command, timeout: Duration) -> Output {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("OMP_NUM_THREADS", "1");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!("{cmd:?} timed out after {timeout:?}\n{}", describe(&out));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `mpirun -np 2 dist-selftest ARGS`, as root, on 2 cores.
fn mpirun(args: &[&str]) -> Output {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-np", "2", "--oversubscribe", "--bind-to", "none"])
        .args(["--timeout", "60"])
        .arg(SELFTEST)
        .args(args)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        // Keep the launcher detection honest: no variables leaking from an outer launcher.
        .env_remove("PMI_SIZE")
        .env_remove("MPI_LOCALNRANKS");
    run(cmd, Duration::from_secs(90))
}

/// The selftest binary alone, without any launcher variables.
fn alone(args: &[&str]) -> Output {
    let mut cmd = Command::new(SELFTEST);
    cmd.args(args);
    for var in rlhf_dist::LAUNCHER_VARS {
        cmd.env_remove(var);
    }
    // A singleton MPI (`Mpi::init` without mpirun) also needs these when run as root.
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    run(cmd, Duration::from_secs(60))
}

fn assert_passed(out: &Output, ranks: &[&str]) {
    let text = describe(out);
    assert!(out.status.success(), "{text}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for rank in ranks {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("rank {rank}: all "))),
            "no success line for rank {rank}\n{text}"
        );
    }
}

#[test]
fn two_ranks_under_mpirun() {
    assert_passed(&mpirun(&[]), &["0/2", "1/2"]);
}

#[test]
fn two_ranks_with_tiny_messages() {
    // 12-byte messages: every buffer goes in many chunks, some of them partial.
    assert_passed(&mpirun(&["--chunk-bytes", "12"]), &["0/2", "1/2"]);
}

#[test]
fn alone_is_a_single_process() {
    assert_passed(&alone(&[]), &["0/1"]);
}

#[test]
fn alone_as_an_mpi_singleton() {
    assert_passed(&alone(&["--chunk-bytes", "12"]), &["0/1"]);
}

#[test]
fn bad_arguments_fail() {
    let out = alone(&["--chunk-bytes", "many"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn nccl_flag_says_what_it_needs() {
    // `--nccl` needs the `nccl` build, a CUDA device and an MPI launcher; without any of them it
    // stops with a message, never falling back to another backend.
    let out = alone(&["--nccl"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let expected = if !cfg!(feature = "nccl") {
        "built without the `nccl` feature"
    } else if !tch::Cuda::is_available() {
        "libtorch sees no CUDA device"
    } else {
        "needs an MPI launcher"
    };
    assert!(err.contains(expected), "{}", describe(&out));
}
