//! Checks that bf16 matmul works on this CPU after `ensure_usable_cpu_isa` (see src/cpu.rs).
fn main() {
    let f = tch::Tensor::randn([256, 256], (tch::Kind::Float, tch::Device::Cpu));
    if std::env::args().count() > 1 { let _ = f.matmul(&f).sum(tch::Kind::Float); }
    rlhf_model::cpu::ensure_usable_cpu_isa();
    println!("ONEDNN_MAX_CPU_ISA={:?}", std::env::var("ONEDNN_MAX_CPU_ISA").ok());
    let a = tch::Tensor::ones([64, 256], (tch::Kind::BFloat16, tch::Device::Cpu));
    let b = tch::Tensor::ones([256, 768], (tch::Kind::BFloat16, tch::Device::Cpu));
    println!("bf16 matmul ok: {}", a.matmul(&b).double_value(&[0, 0]));
}
