/*
 * librumpdev_ata's component: the ATA mid-layer's configuration data, and
 * device nodes for the disks the host controllers found.  Written for this
 * project (not part of NetBSD).
 */

#include <sys/param.h>
#include <sys/conf.h>
#include <sys/device.h>
#include <sys/disklabel.h>
#include <sys/stat.h>
#include <sys/systm.h>

#include <rump-sys/kern.h>
#include <rump-sys/vfs.h>

#include "ioconf.c"

RUMP_COMPONENT(RUMP_COMPONENT_DEV)
{

	config_init_component(cfdriver_ioconf_ata,
	    cfattach_ioconf_ata, cfdata_ioconf_ata);
}

/* Most wd units given device nodes. */
#define ATA_NODE_UNITS 16

/*
 * After autoconfiguration (config_finalize waited for every atabus probe):
 * /dev/wdN[a-e] and /dev/rwdN[a-e] for each disk found.
 */
RUMP_COMPONENT(RUMP_COMPONENT_POSTINIT)
{
	extern const struct bdevsw wd_bdevsw;
	extern const struct cdevsw wd_cdevsw;
	extern struct cfdriver wd_cd;
	devmajor_t bmaj = NODEVMAJOR, cmaj = NODEVMAJOR;
	char name[16];
	int error, unit;

	error = devsw_attach("wd", &wd_bdevsw, &bmaj, &wd_cdevsw, &cmaj);
	if (error != 0)
		panic("rumpdev_ata: devsw_attach(wd): %d", error);
	for (unit = 0; unit < ATA_NODE_UNITS; unit++) {
		if (device_lookup(&wd_cd, unit) == NULL)
			continue;
		snprintf(name, sizeof(name), "/dev/wd%d", unit);
		error = rump_vfs_makedevnodes(S_IFBLK, name, 'a', bmaj,
		    DISKMINOR(unit, 0), RAW_PART + 2);
		if (error == 0) {
			snprintf(name, sizeof(name), "/dev/rwd%d", unit);
			error = rump_vfs_makedevnodes(S_IFCHR, name, 'a', cmaj,
			    DISKMINOR(unit, 0), RAW_PART + 2);
		}
		if (error != 0)
			panic("rumpdev_ata: device nodes of wd%d: %d", unit, error);
	}
}
