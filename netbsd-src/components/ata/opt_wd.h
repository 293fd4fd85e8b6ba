/* librumpdev_ata: no wd options (written for this project). */
