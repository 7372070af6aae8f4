//! Sets `cfg(x86_kernels)` when the x86-64 SIMD kernels are compiled in:
//! on x86-64, unless the `scalar-only` feature asks for the portable
//! reference alone (how the workspace is built and tested as it builds on a
//! CPU architecture lucid has no SIMD kernels for).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(x86_kernels)");
    println!("cargo::rerun-if-changed=build.rs");
    let x86_64 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    let scalar_only = std::env::var_os("CARGO_FEATURE_SCALAR_ONLY").is_some();
    if x86_64 && !scalar_only {
        println!("cargo::rustc-cfg=x86_kernels");
    }
}
