/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Absolute paths of kernel (dentry, vfsmount) pairs, walked up to the root. */
#ifndef VIGIL_PATH_H
#define VIGIL_PATH_H

#include "maps.h"

/* Upper bound on path components walked; deeper paths are marked truncated. */
#define MAX_PATH_COMPONENTS 64

/* State of one path walk, carried across bpf_loop iterations. */
struct path_walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	__u32 off;      /* the path is scratch->buf[off, PATH_SCRATCH_LEN) */
	bool truncated; /* still set when the walk stopped before the root */
};

/* path_walk_step prepends one component (or crosses one mount); returns 1 to stop. */
static long path_walk_step(__u64 index, struct path_walk *w)
{
	__u32 zero = 0;
	struct path_scratch *scratch = bpf_map_lookup_elem(&path_scratch_map, &zero);
	if (!scratch)
		return 1;

	/* Plain locals: BPF_CORE_READ would relocate the path_walk fields too. */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (dentry == mnt_root) {
		/* Top of this mount: continue at its mount point in the parent mount. */
		struct mount *mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
		if (mnt_parent == mnt) {
			w->truncated = false;
			return 1;
		}
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vfsmnt = &mnt_parent->mnt;
		return 0;
	}

	struct qstr name = BPF_CORE_READ(dentry, d_name);
	__u32 len = name.len;
	if (len > NAME_MAX_LEN - 1)
		len = NAME_MAX_LEN - 1;
	__u32 off = w->off;
	if (off > PATH_SCRATCH_LEN || len + 1 > off)
		return 1;
	off -= len + 1;
	if (bpf_probe_read_kernel(&scratch->buf[(off + 1) & (PATH_SCRATCH_LEN - 1)],
				  len & (NAME_MAX_LEN - 1), name.name) < 0)
		return 1;
	scratch->buf[off & (PATH_SCRATCH_LEN - 1)] = '/';
	w->off = off;

	if (dentry == parent) {
		/* A root that is not a mount's root: a pseudo file such as a memfd. */
		w->truncated = false;
		return 1;
	}
	w->dentry = parent;
	return 0;
}

/*
 * build_path writes the absolute path of (dentry, vfsmnt) into the per-CPU
 * scratch buffer, last component first, and returns the offset where it
 * starts: the path is scratch->buf[off, PATH_SCRATCH_LEN). *truncated is set
 * when the walk gave up before reaching the root.
 */
static __always_inline __u32 build_path(struct path_scratch *scratch, struct dentry *dentry,
					struct vfsmount *vfsmnt, bool *truncated)
{
	struct path_walk w = {
		.dentry = dentry,
		.vfsmnt = vfsmnt,
		.mnt = container_of(vfsmnt, struct mount, mnt),
		.off = PATH_SCRATCH_LEN,
		.truncated = true,
	};
	bpf_loop(MAX_PATH_COMPONENTS, path_walk_step, &w, 0);
	*truncated = w.truncated;

	__u32 off = w.off;
	if (off > PATH_SCRATCH_LEN)
		off = PATH_SCRATCH_LEN;
	if (off == PATH_SCRATCH_LEN) {
		/* The root directory itself. */
		off--;
		scratch->buf[off & (PATH_SCRATCH_LEN - 1)] = '/';
	}
	return off;
}

/*
 * copy_path (max must be a power of two) copies the tail of the assembled path (at most max - 1 bytes, so
 * the basename survives truncation) into dst and returns its length.
 */
static __always_inline __u32 copy_path(char *dst, __u32 max, struct path_scratch *scratch,
				       __u32 off, bool *truncated)
{
	__u32 len = PATH_SCRATCH_LEN - off;
	if (len > max - 1) {
		off = PATH_SCRATCH_LEN - (max - 1);
		len = max - 1;
		*truncated = true;
	}
	/* max is a power of two: the mask changes nothing but proves the bound to the verifier. */
	barrier_var(len);
	len &= max - 1;
	if (bpf_probe_read_kernel(dst, len, &scratch->buf[off & (PATH_SCRATCH_LEN - 1)]) < 0)
		return 0;
	return len;
}

#endif /* VIGIL_PATH_H */
