//! Bad data-parallel set-ups get one clear message: a binary built without the `mpi` feature
//! (a stage or the pipeline) refuses to run as N independent copies under mpirun. Simulated
//! with the launcher's environment, so no MPI is needed.

#![cfg(not(feature = "mpi"))]

mod common;
use common::*;
use std::process::Command;

fn under_mpirun(name: &str, args: &[String]) -> String {
    let o = Command::new(bin(name))
        .args(args)
        .env("OMPI_COMM_WORLD_SIZE", "2")
        .env("OMPI_COMM_WORLD_RANK", "0")
        .env("OMPI_COMM_WORLD_LOCAL_SIZE", "2")
        .env("RLHF_DEVICE", "cpu")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{name} ran under a simulated mpirun");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_stage_built_without_mpi_refuses_to_run_as_copies() {
    let f = Fixture::new();
    let err = under_mpirun(
        "sft",
        &args(&[
            "--init",
            &f.s("sft"),
            "--data",
            &f.s("world/demonstrations.jsonl"),
            "--out",
            &f.s("run"),
        ]),
    );
    assert!(
        err.contains("built without the `mpi` feature") && err.contains("2 ranks"),
        "{err}"
    );
    assert!(!f.p("run").exists(), "nothing is written");
}

#[test]
fn the_pipeline_built_without_mpi_refuses_to_run_as_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    let err = under_mpirun("pipeline", &args(&["--out", out.to_str().unwrap()]));
    assert!(
        err.contains("built without the `mpi` feature") && err.contains("2 ranks"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");
}
