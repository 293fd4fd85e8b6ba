//! Partition tables of a disk: MBR (primary partitions 1–4, logical ones
//! from 5 on through the extended partition's chain) and GPT (entries
//! numbered from 1), as libstore's `part:N:` names count them. Sectors are
//! 512 bytes (the images and Mach disk devices the suite serves).

use std::io;

/// The sector size the tables count in.
pub const SECTOR: u64 = 512;

/// One partition: its number and byte range on the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as `part:N:` names it.
    pub number: u32,
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// MBR partition types that hold a chain of logical partitions.
fn extended(ty: u8) -> bool {
    matches!(ty, 0x05 | 0x0f | 0x85)
}

/// The partitions of a disk of `disk_len` bytes, reading sectors with
/// `read(offset, buf)`. A disk without a valid table, or with entries that
/// point outside it, is an error that says which.
pub fn read_table(
    disk_len: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<Vec<Partition>> {
    let mut mbr = [0u8; SECTOR as usize];
    read(0, &mut mbr)?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err(invalid("no partition table (no MBR signature)".into()));
    }
    let entries: Vec<(u8, u64, u64)> = (0..4)
        .map(|i| {
            let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
            (e[4], u64::from(le32(e, 8)), u64::from(le32(e, 12)))
        })
        .collect();
    if entries.iter().any(|e| e.0 == 0xee) {
        return gpt(disk_len, read);
    }
    let mut parts = Vec::new();
    let mut logical = 5;
    for (i, &(ty, lba, count)) in entries.iter().enumerate() {
        if ty == 0 || count == 0 {
            continue;
        }
        let p = Partition {
            number: i as u32 + 1,
            start: lba * SECTOR,
            len: count * SECTOR,
        };
        check(disk_len, &p)?;
        if extended(ty) {
            walk_extended(disk_len, lba, read, &mut logical, &mut parts)?;
        } else {
            parts.push(p);
        }
    }
    parts.sort_by_key(|p| p.number);
    Ok(parts)
}

fn check(disk_len: u64, p: &Partition) -> io::Result<()> {
    match p.start.checked_add(p.len) {
        Some(end) if end <= disk_len && p.start > 0 => Ok(()),
        _ => Err(invalid(format!(
            "partition {} (bytes {}+{}) lies outside the disk of {disk_len} bytes",
            p.number, p.start, p.len
        ))),
    }
}

/// The logical partitions in the chain of EBRs from `base` (LBA).
fn walk_extended(
    disk_len: u64,
    base: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
    logical: &mut u32,
    parts: &mut Vec<Partition>,
) -> io::Result<()> {
    let mut ebr_lba = base;
    // A chain longer than the disk has sectors would be a loop.
    for _ in 0..disk_len / SECTOR {
        let mut ebr = [0u8; SECTOR as usize];
        read(ebr_lba * SECTOR, &mut ebr)?;
        if ebr[510..512] != [0x55, 0xaa] {
            return Err(invalid(format!(
                "extended boot record at LBA {ebr_lba} has no signature"
            )));
        }
        let (ty, rel, count) = (
            ebr[446 + 4],
            u64::from(le32(&ebr, 446 + 8)),
            u64::from(le32(&ebr, 446 + 12)),
        );
        if ty != 0 && count != 0 {
            let p = Partition {
                number: *logical,
                start: (ebr_lba + rel) * SECTOR,
                len: count * SECTOR,
            };
            check(disk_len, &p)?;
            parts.push(p);
            *logical += 1;
        }
        let next = &ebr[446 + 16..446 + 32];
        if next[4] == 0 || le32(next, 8) == 0 {
            return Ok(());
        }
        ebr_lba = base + u64::from(le32(next, 8));
    }
    Err(invalid("the extended partition's chain loops".into()))
}

fn gpt(
    disk_len: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<Vec<Partition>> {
    let mut hdr = [0u8; SECTOR as usize];
    read(SECTOR, &mut hdr)?;
    if &hdr[0..8] != b"EFI PART" {
        return Err(invalid("protective MBR but no GPT header at LBA 1".into()));
    }
    let entries_lba = le64(&hdr, 72);
    let count = le32(&hdr, 80);
    let size = le32(&hdr, 84) as usize;
    if !(128..=4096).contains(&size) || count > 4096 {
        return Err(invalid(format!(
            "GPT header: {count} entries of {size} bytes"
        )));
    }
    let mut table = vec![0u8; (count as usize * size).next_multiple_of(SECTOR as usize)];
    read(entries_lba * SECTOR, &mut table)?;
    let mut parts = Vec::new();
    for i in 0..count as usize {
        let e = &table[i * size..(i + 1) * size];
        if e[0..16].iter().all(|&b| b == 0) {
            continue;
        }
        let (first, last) = (le64(e, 32), le64(e, 40));
        if last < first {
            return Err(invalid(format!(
                "GPT entry {}: last LBA before first",
                i + 1
            )));
        }
        let p = Partition {
            number: i as u32 + 1,
            start: first * SECTOR,
            len: (last - first + 1) * SECTOR,
        };
        check(disk_len, &p)?;
        parts.push(p);
    }
    Ok(parts)
}

/// Partition `number` of the disk, or an error naming the ones there are.
pub fn find(
    disk_len: u64,
    number: u32,
    read: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<Partition> {
    let parts = read_table(disk_len, read)?;
    parts
        .iter()
        .find(|p| p.number == number)
        .copied()
        .ok_or_else(|| {
            let have: Vec<String> = parts.iter().map(|p| p.number.to_string()).collect();
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no partition {number} (the table has: {})",
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(disk: &mut [u8], sector: u64, slot: usize, ty: u8, lba: u32, count: u32) {
        let at = (sector * SECTOR) as usize + 446 + 16 * slot;
        disk[at + 4] = ty;
        disk[at + 8..at + 12].copy_from_slice(&lba.to_le_bytes());
        disk[at + 12..at + 16].copy_from_slice(&count.to_le_bytes());
        let sig = (sector * SECTOR) as usize + 510;
        disk[sig] = 0x55;
        disk[sig + 1] = 0xaa;
    }

    fn reader(disk: &[u8]) -> impl FnMut(u64, &mut [u8]) -> io::Result<()> + '_ {
        move |off, buf| {
            let off = off as usize;
            let src = disk
                .get(off..off + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    #[test]
    fn mbr_primaries_and_logicals_are_numbered_as_libstore_does() {
        let mut disk = vec![0u8; 4096 * 512];
        entry(&mut disk, 0, 0, 0x83, 2048, 1000);
        entry(&mut disk, 0, 1, 0x05, 3072, 1000);
        // EBR 1 at 3072: logical at +63, next EBR at +500.
        entry(&mut disk, 3072, 0, 0x83, 63, 100);
        entry(&mut disk, 3072, 1, 0x05, 500, 200);
        entry(&mut disk, 3572, 0, 0x0c, 63, 100);
        let parts = read_table(disk.len() as u64, &mut reader(&disk)).unwrap();
        assert_eq!(
            parts,
            vec![
                Partition {
                    number: 1,
                    start: 2048 * 512,
                    len: 1000 * 512
                },
                Partition {
                    number: 5,
                    start: (3072 + 63) * 512,
                    len: 100 * 512
                },
                Partition {
                    number: 6,
                    start: (3572 + 63) * 512,
                    len: 100 * 512
                },
            ]
        );
        let e = find(disk.len() as u64, 2, &mut reader(&disk)).unwrap_err();
        assert!(e.to_string().contains("has: 1, 5, 6"), "{e}");
    }

    #[test]
    fn gpt_entries_are_read_behind_the_protective_mbr() {
        let mut disk = vec![0u8; 8192 * 512];
        entry(&mut disk, 0, 0, 0xee, 1, 8191);
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 72..512 + 80].copy_from_slice(&2u64.to_le_bytes());
        disk[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let e2 = 1024 + 128; // entry 2
        disk[e2] = 1;
        disk[e2 + 32..e2 + 40].copy_from_slice(&4096u64.to_le_bytes());
        disk[e2 + 40..e2 + 48].copy_from_slice(&8000u64.to_le_bytes());
        let p = find(disk.len() as u64, 2, &mut reader(&disk)).unwrap();
        assert_eq!(
            p,
            Partition {
                number: 2,
                start: 4096 * 512,
                len: 3905 * 512
            }
        );
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let disk = vec![0u8; 64 * 512];
        let e = read_table(disk.len() as u64, &mut reader(&disk)).unwrap_err();
        assert!(e.to_string().contains("no MBR signature"), "{e}");
        let mut disk = vec![0u8; 64 * 512];
        entry(&mut disk, 0, 0, 0x83, 10, 1000);
        let e = read_table(disk.len() as u64, &mut reader(&disk)).unwrap_err();
        assert!(e.to_string().contains("outside the disk"), "{e}");
        // An EBR chain that comes back to itself is refused, not walked
        // for ever.
        let mut disk = vec![0u8; 64 * 512];
        entry(&mut disk, 0, 0, 0x05, 8, 40);
        entry(&mut disk, 8, 1, 0x05, 1, 8);
        entry(&mut disk, 9, 1, 0x05, 1, 8);
        let e = read_table(disk.len() as u64, &mut reader(&disk)).unwrap_err();
        assert!(e.to_string().contains("loops"), "{e}");
    }
}
