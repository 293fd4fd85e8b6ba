//! Which file system a store holds, from its superblock or boot sector,
//! and the NetBSD mount type that serves it.

use std::fmt;

/// A file system rumpfs serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// The Berkeley Fast File System, UFS1 or UFS2 (NetBSD's `ffs`).
    Ffs,
    /// The second extended file system, revisions 0 and 1 (`ext2fs`).
    Ext2,
    /// FAT12, FAT16 or FAT32 with long names (`msdos`).
    Fat,
}

impl FsType {
    /// The name NetBSD's `mount(2)` knows it by.
    #[must_use]
    pub fn netbsd_name(self) -> &'static str {
        match self {
            FsType::Ffs => "ffs",
            FsType::Ext2 => "ext2fs",
            FsType::Fat => "msdos",
        }
    }

    /// The type `-t NAME` asks for: NetBSD's names, Linux's and the Hurd's.
    pub fn from_name(name: &str) -> Result<Self, String> {
        match name {
            "ffs" | "ufs" | "ufs1" | "ufs2" => Ok(FsType::Ffs),
            "ext2" | "ext2fs" => Ok(FsType::Ext2),
            "msdos" | "msdosfs" | "vfat" | "fat" | "fatfs" => Ok(FsType::Fat),
            other => Err(format!(
                "unknown file system type {other:?} (rumpfs serves ffs, ext2fs and msdos)"
            )),
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.netbsd_name())
    }
}

/// How many bytes from the start of a store [`detect`] looks at.
/// (Every superblock place in [`FFS_SUPERBLOCKS`] lies inside it.)
pub const PROBE_LEN: usize = 262_144 + 8192;

/// `FS_UFS1_MAGIC`.
const UFS1_MAGIC: u32 = 0x0001_1954;
/// `FS_UFS2_MAGIC`.
const UFS2_MAGIC: u32 = 0x1954_0119;
/// Where a superblock may start (`SBLOCKSEARCH`: UFS2, UFS1, floppy, piggy).
const FFS_SUPERBLOCKS: [usize; 4] = [65536, 8192, 0, 262_144];
/// `fs_magic`'s offset in `struct fs`.
const FFS_MAGIC_AT: usize = 1372;
/// The ext2 superblock's offset and its magic's offset inside it.
const EXT2_SUPERBLOCK: usize = 1024;
const EXT2_MAGIC: u16 = 0xef53;

/// The file system whose superblock `head` (the store's first bytes, up to
/// [`PROBE_LEN`]) starts with, or what was found instead.
pub fn detect(head: &[u8]) -> Result<FsType, String> {
    for at in FFS_SUPERBLOCKS {
        if let Some(m) = head.get(at + FFS_MAGIC_AT..at + FFS_MAGIC_AT + 4) {
            let m = u32::from_le_bytes(m.try_into().expect("4 bytes"));
            if m == UFS1_MAGIC || m == UFS2_MAGIC {
                return Ok(FsType::Ffs);
            }
            if m.swap_bytes() == UFS1_MAGIC || m.swap_bytes() == UFS2_MAGIC {
                return Err("a big-endian FFS (rumpfs serves little-endian ones)".into());
            }
        }
    }
    if let Some(m) = head.get(EXT2_SUPERBLOCK + 56..EXT2_SUPERBLOCK + 58)
        && u16::from_le_bytes([m[0], m[1]]) == EXT2_MAGIC
    {
        return Ok(FsType::Ext2);
    }
    if fat_boot_sector(head) {
        return Ok(FsType::Fat);
    }
    if head.len() < 1024 {
        return Err(format!(
            "only {} bytes, too small for any file system",
            head.len()
        ));
    }
    if head.get(510..512) == Some(&[0x55, 0xaa]) {
        return Err("no file system, but a partition table: name a partition (part:N:...)".into());
    }
    Err("no FFS, ext2 or FAT superblock".into())
}

/// Whether `b` begins with a FAT boot sector: a sane BIOS parameter block
/// (sector size, cluster size, reserved sectors, FAT count) and the
/// boot-sector signature.
fn fat_boot_sector(b: &[u8]) -> bool {
    let Some(bs) = b.get(..512) else {
        return false;
    };
    let bytes_per_sector = u16::from_le_bytes([bs[11], bs[12]]);
    let per_cluster = bs[13];
    let reserved = u16::from_le_bytes([bs[14], bs[15]]);
    let fats = bs[16];
    bs[510..512] == [0x55, 0xaa]
        && matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
        && per_cluster.is_power_of_two()
        && reserved > 0
        && (1..=4).contains(&fats)
        && (bs[0] == 0xeb || bs[0] == 0xe9)
}

/// Where FAT32's `FSInfo` sector starts (bytes from the boot sector), for a
/// boot sector `boot` of FAT32; `None` for FAT12/16 or no `FSInfo`.
#[must_use]
pub fn fat32_fsinfo(boot: &[u8]) -> Option<u64> {
    let bs = boot.get(..512)?;
    let bytes_per_sector = u64::from(u16::from_le_bytes([bs[11], bs[12]]));
    let fat16_size = u16::from_le_bytes([bs[22], bs[23]]);
    let fat32_size = u32::from_le_bytes(bs[36..40].try_into().expect("4 bytes"));
    let fsinfo = u64::from(u16::from_le_bytes([bs[48], bs[49]]));
    (fat16_size == 0 && fat32_size != 0 && fsinfo != 0 && fsinfo != 0xffff)
        .then_some(fsinfo * bytes_per_sector)
}

/// `FSInfo`'s signatures (lead, structure, trail) and the free-count field.
pub mod fsinfo {
    /// `FSI_LeadSig` at 0.
    pub const LEAD: u32 = 0x4161_5252;
    /// `FSI_StrucSig` at 484.
    pub const STRUC: u32 = 0x6141_7272;
    /// `FSI_Free_Count`'s offset: a hint, 0xFFFFFFFF when unknown.
    pub const FREE_COUNT: usize = 488;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblocks_name_their_file_system() {
        let mut img = vec![0u8; PROBE_LEN];
        img[8192 + FFS_MAGIC_AT..8192 + FFS_MAGIC_AT + 4]
            .copy_from_slice(&UFS1_MAGIC.to_le_bytes());
        assert_eq!(detect(&img), Ok(FsType::Ffs));

        let mut img = vec![0u8; PROBE_LEN];
        img[65536 + FFS_MAGIC_AT..65536 + FFS_MAGIC_AT + 4]
            .copy_from_slice(&UFS2_MAGIC.to_le_bytes());
        assert_eq!(detect(&img), Ok(FsType::Ffs));

        let mut img = vec![0u8; 4096];
        img[1024 + 56] = 0x53;
        img[1024 + 57] = 0xef;
        assert_eq!(detect(&img), Ok(FsType::Ext2));

        let mut img = vec![0u8; 4096];
        img[0] = 0xeb;
        img[11..13].copy_from_slice(&512u16.to_le_bytes());
        img[13] = 4;
        img[14] = 1;
        img[16] = 2;
        img[510] = 0x55;
        img[511] = 0xaa;
        assert_eq!(detect(&img), Ok(FsType::Fat));
        img[13] = 3; // not a power of two: a partition table, not a BPB
        img[0] = 0;
        assert!(detect(&img).unwrap_err().contains("partition table"));
    }

    #[test]
    fn fat32_boot_sectors_locate_fsinfo() {
        let mut bs = vec![0u8; 512];
        bs[11..13].copy_from_slice(&512u16.to_le_bytes());
        bs[36..40].copy_from_slice(&1000u32.to_le_bytes());
        bs[48..50].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(fat32_fsinfo(&bs), Some(512));
        bs[22] = 9; // FAT16 has its FAT size here
        assert_eq!(fat32_fsinfo(&bs), None);
    }

    #[test]
    fn what_is_not_served_is_named() {
        assert!(detect(&[0u8; 100]).unwrap_err().contains("too small"));
        assert!(
            detect(&vec![0u8; PROBE_LEN])
                .unwrap_err()
                .contains("no FFS")
        );
        let mut img = vec![0u8; PROBE_LEN];
        img[8192 + FFS_MAGIC_AT..8192 + FFS_MAGIC_AT + 4]
            .copy_from_slice(&UFS1_MAGIC.to_be_bytes());
        assert!(detect(&img).unwrap_err().contains("big-endian"));
        assert_eq!(FsType::from_name("vfat"), Ok(FsType::Fat));
        assert!(FsType::from_name("xfs").unwrap_err().contains("xfs"));
    }
}
