//! Keeping freed memory in the process between training steps.
//!
//! A CPU training step allocates and frees the same buffers every step: activations, gradients,
//! im2col columns, gate buffers, most of them hundreds of KiB to a few MiB. glibc's malloc hands
//! blocks above its mmap threshold straight to the kernel and gives back free memory at the top
//! of its heap beyond its trim threshold, so each step mapped its large buffers afresh and the
//! kernel zeroed and faulted in every page again. Those faults run on the thread that allocates,
//! in a burn step the one that runs the step, while the other rayon workers wait: at batch 64 on 2
//! cores about 15% of a step's wall time went to that thread's memset, memcpy and page faults
//! (issue 15, `reports/profile-train.md`, fifth round).
//!
//! [`keep_freed_memory`] raises both thresholds once for the process, so that freed buffers stay
//! in malloc's heap and are reused by the next step. The cost is that the process keeps up to
//! [`TRIM_THRESHOLD`] of free heap instead of returning it. Other allocators and platforms are left
//! as they are.

use std::sync::OnceLock;

/// Blocks up to this size come from malloc's heap instead of their own mapping: beyond every
/// buffer of the default training step (at batch 64 the largest are a few MiB).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// Free memory at the top of the heap is returned to the kernel only beyond this.
pub const TRIM_THRESHOLD: usize = 256 << 20;

/// Raises glibc's mmap and trim thresholds for the whole process (see the module docs), once;
/// whether they are in force: on Linux with glibc when malloc accepted them, else `false` (and
/// nothing changed).
pub fn keep_freed_memory() -> bool {
    static ACCEPTED: OnceLock<bool> = OnceLock::new();
    *ACCEPTED.get_or_init(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only sets malloc's parameters, which any thread may do at any time;
            // it rejects values it does not accept and returns 0 for them.
            let accepted = unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int) == 1
                    && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int) == 1
            };
            if !accepted {
                tracing::debug!("malloc did not accept the training's mmap and trim thresholds");
            }
            accepted
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        false
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// glibc accepts both values, and a second call changes nothing.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_thresholds() {
        assert!(keep_freed_memory());
        assert!(keep_freed_memory());
    }
}
