/* librumpdev_ata: disks only, no ATAPI (written for this project). */
#define NATAPIBUS 0
