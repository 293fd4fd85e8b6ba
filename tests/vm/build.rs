//! The guest programs link rumpdisk, which links the NetBSD rump kernel when
//! `RUMP_PREFIX` names one: executables over the kernel need its link
//! arguments (harmless without it).

fn main() {
    netbsd_src::binary_link_args();
}
