/* librumpdev_ahcisata: disks only, no ATAPI (written for this project). */
#define NATAPIBUS 0
