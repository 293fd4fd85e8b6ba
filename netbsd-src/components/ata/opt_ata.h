/* librumpdev_ata: no ATA debugging (written for this project). */
