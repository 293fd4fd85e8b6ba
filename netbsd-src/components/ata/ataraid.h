/* librumpdev_ata: no RAID metadata probing (written for this project). */
#define NATARAID 0
