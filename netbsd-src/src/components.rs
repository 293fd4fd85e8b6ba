//! Which rump components each translator links.
//!
//! Names are library names without `lib` and `.a`. `required` components
//! must be installed; `optional` ones are linked when the installed tree
//! has them (drivers that exist only in some NetBSD trees: the 2016
//! src-netbsd that buildrump.sh pins has virtio `ld` but no `ahcisata`,
//! `piixide`, `ata` or `nvme`; Debian GNU/Hurd's 2025 kernel has them).

/// A translator's components.
#[derive(Debug, Clone, Copy)]
pub struct ComponentSet {
    /// Must be present.
    pub required: &'static [&'static str],
    /// Linked if present.
    pub optional: &'static [&'static str],
}

/// The kernel core and the VFS faction every translator needs (device
/// nodes live in the VFS).
pub const BASE: ComponentSet = ComponentSet {
    required: &["rump", "rumpvfs"],
    optional: &[],
};

/// rumpdisk: disk drivers on the rump PCI bus.
pub const RUMPDISK: ComponentSet = ComponentSet {
    required: &["rump", "rumpvfs", "rumpdev", "rumpdev_disk", "rumpdev_pci"],
    optional: &[
        "rumpdev_ahcisata",
        "rumpdev_piixide",
        "rumpdev_ata",
        "rumpdev_nvme",
        "rumpdev_scsipi",
        "rumpdev_pci_virtio",
        "rumpdev_virtio_ld",
    ],
};

/// rumpnet: NIC drivers on the rump PCI bus (wm for Intel's e1000 family
/// with its PHYs, vioif on virtio), the interface layer and bpf, through
/// which rumpnet moves whole frames in and out of an interface. netinet
/// is linked though rumpnet configures no address: the kernel's
/// `ether_input` hands every IPv4 frame to the IP fast-forward cache
/// (built with `GATEWAY`), whose lock only netinet's `ip_init` creates.
pub const RUMPNET: ComponentSet = ComponentSet {
    required: &[
        "rump",
        "rumpvfs",
        "rumpdev",
        "rumpnet",
        "rumpnet_net",
        "rumpnet_netinet",
        "rumpdev_bpf",
        "rumpdev_pci",
    ],
    optional: &[
        // Newer trees: librumpnet calls into AF_LOCAL's sysctl setup, wm
        // into the receive-side scaling key (build-kernel.sh's rss).
        "rumpnet_local",
        "rumpnet_rss",
        "rumpdev_pci_if_wm",
        "rumpdev_miiphy",
        "rumpdev_pci_virtio",
        "rumpdev_virtio_if_vioif",
    ],
};

/// rumpusbdisk: USB host controllers on the rump PCI bus (EHCI, OHCI and
/// UHCI in the 2016 tree; xHCI where a newer tree has it), the USB stack
/// with its hubs, umass, and SCSI disks (`sd`).
pub const RUMPUSBDISK: ComponentSet = ComponentSet {
    required: &[
        "rump",
        "rumpvfs",
        "rumpdev",
        "rumpdev_disk",
        "rumpdev_pci",
        "rumpdev_usb",
        "rumpdev_pci_usbhc",
        "rumpdev_umass",
        "rumpdev_scsipi",
    ],
    // Newer trees' umass (its ATA-over-USB glue) calls into the ATA
    // mid-layer, build-kernel.sh's librumpdev_ata.
    optional: &["rumpdev_pci_xhci", "rumpdev_ata"],
};

/// rumpsound: sound drivers on the rump PCI bus (Intel HD Audio with its
/// function-group driver, the ICH AC'97 controller with its codec
/// layer) and audio(4) above them.
pub const RUMPSOUND: ComponentSet = ComponentSet {
    required: &["rump", "rumpvfs", "rumpdev", "rumpdev_pci", "rumpdev_audio"],
    optional: &[
        "rumpdev_pci_hdaudio",
        "rumpdev_hdaudio_hdafg",
        "rumpdev_pci_auich",
        "rumpdev_audio_ac97",
    ],
};

/// Disks through the kernel's disk layer, host images attached with etfs
/// (rumpdisk's NetBSD back end without PCI drivers).
pub const DISK: ComponentSet = ComponentSet {
    required: &["rump", "rumpvfs", "rumpdev", "rumpdev_disk"],
    optional: &[],
};

/// File-system components for tests and rumpfs (over etfs block devices).
pub const FILESYSTEMS: ComponentSet = ComponentSet {
    required: &["rump", "rumpvfs", "rumpdev", "rumpdev_disk"],
    optional: &["rumpfs_ffs", "rumpfs_msdos", "rumpfs_ext2fs"],
};

/// Link position: leaf drivers first, then buses and helpers, then the
/// factions, then the kernel core (the order the components' references
/// run in).
#[must_use]
pub fn link_rank(name: &str) -> u8 {
    match name {
        "rump" => 9,
        "rumpvfs" => 8,
        "rumpdev" | "rumpnet" => 7,
        "rumpdev_pci" => 6,
        "rumpdev_disk" | "rumpdev_usb" | "rumpdev_audio" | "rumpdev_scsipi" | "rumpnet_net" => 5,
        n if n.starts_with("rumpdev_pci_") || n == "rumpdev_ata" => 4,
        _ => 0,
    }
}
