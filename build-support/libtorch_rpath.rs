// Shared by the build scripts of every crate whose binaries, tests or benches link libtorch.
// It embeds an rpath to libtorch's `lib` folder, so that the programs find it at run time
// without LD_LIBRARY_PATH, and links `torch` with --no-as-needed so that the CUDA backend
// (libtorch_cuda) is loaded whenever the libtorch build has one (tch-rs #907, #980).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-ltorch");
        if lib.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-ltorch_cuda");
        }
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
