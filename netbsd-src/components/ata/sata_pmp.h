/* librumpdev_ata: port multipliers handled (written for this project). */
#define NSATA_PMP 1
