//! Builds the C shim for the variadic `rumpuser_dprintf`.

fn main() {
    println!("cargo:rerun-if-changed=csrc/dprintf.c");
    cc::Build::new()
        .file("csrc/dprintf.c")
        .warnings(true)
        .extra_warnings(true)
        .compile("hypercall_dprintf");
}
