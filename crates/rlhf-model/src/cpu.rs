//! CPU quirks that must be handled before libtorch's first bf16 operation.

use std::sync::Once;

static PROBE: Once = Once::new();

/// Makes bf16 safe on CPUs that report Intel AMX but trap when it is used.
///
/// Some virtual machines advertise AMX (`amx_tile` in /proc/cpuinfo) and grant the kernel
/// permission, yet executing an AMX instruction raises SIGILL; oneDNN's bf16 matmul then kills
/// the process (PyTorch itself crashes the same way on such machines). This runs AMX
/// matmul once in a forked child; if the child dies, it sets `ONEDNN_MAX_CPU_ISA` to
/// `AVX512_CORE_BF16` so oneDNN uses AVX-512 BF16 kernels instead. It does nothing when AMX
/// works, when the CPU has no AMX, or when the user already set `ONEDNN_MAX_CPU_ISA`.
///
/// It must run before the process's first matmul of any dtype: libtorch's oneDNN reads the
/// setting once, at its first use. Our binaries call it first thing in `main`; call it at the
/// start of yours if it may use bf16 on the CPU. The bf16 entry points of this workspace
/// (`set_kind`, loading in bf16) call it too, which helps only if no matmul ran before.
/// Idempotent and cheap after the first call.
pub fn ensure_usable_cpu_isa() {
    PROBE.call_once(|| {
        if std::env::var_os("ONEDNN_MAX_CPU_ISA").is_some() || !cpu_reports_amx() {
            return;
        }
        if !amx_works() {
            // Set before oneDNN first reads it; no other thread of ours reads the environment.
            std::env::set_var("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16");
        }
    });
}

fn cpu_reports_amx() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("flags"))
                .is_some_and(|l| l.split_whitespace().any(|f| f == "amx_tile"))
        })
        .unwrap_or(false)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn amx_works() -> bool {
    // A real oneDNN bf16 matmul in a forked child (a hand-written AMX probe passes on the VMs
    // where oneDNN's kernels trap). The child runs single-threaded and exits with _exit; the
    // parent waits at most 20 s and keeps oneDNN's choice if it cannot tell.
    // SAFETY: fork/waitpid/kill/_exit are plain syscalls; the child never returns.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            return true;
        }
        if pid == 0 {
            tch::set_num_threads(1);
            let opts = (tch::Kind::BFloat16, tch::Device::Cpu);
            let a = tch::Tensor::ones([64, 128], opts);
            let b = tch::Tensor::ones([128, 64], opts);
            let ok = a.matmul(&b).double_value(&[0, 0]) == 128.0;
            libc::_exit(if ok { 0 } else { 1 });
        }
        let mut status = 0;
        for _ in 0..2000 {
            match libc::waitpid(pid, &mut status, libc::WNOHANG) {
                0 => std::thread::sleep(std::time::Duration::from_millis(10)),
                r if r == pid => return !libc::WIFSIGNALED(status),
                _ => return true,
            }
        }
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
        true
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn amx_works() -> bool {
    true
}
