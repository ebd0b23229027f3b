//! Memory for the blob tables: large tables in huge pages.
//!
//! A namespace's blob table outgrows the caches with a long queue (48 MiB of
//! buckets for two million blobs), and every push and pop goes to a random
//! bucket of it. With 4 KiB pages that bucket is also a TLB miss, and the
//! page walk before the cache miss cost a pop of a long queue about as much
//! as the miss itself. A table of [`HUGE_PAGE`] or more gets a mapping of its
//! own, aligned to 2 MiB and marked `MADV_HUGEPAGE`, so that one TLB entry
//! covers 2 MiB of it. Only the tables: the rest of the heap stays in small
//! pages (huge pages for the whole heap, tried through jemalloc, cost the
//! blocked consumers and large elements tens of MiB of RSS each).
//!
//! The kernel may have no huge page to give (or huge pages may be off, or
//! only `madvise`d, as on most distributions): the mapping then simply stays
//! in small pages, as the table would have been anyway.

use std::alloc::Layout;
use std::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global};

/// The size of a huge page on x86-64 and of the alignment it needs.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// Allocates blob tables: from the global allocator below [`HUGE_PAGE`],
/// from a mapping of their own in huge pages from there on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TableMemory;

/// The length of the mapping for `layout`: whole huge pages.
fn mapped_len(layout: Layout) -> usize {
    layout.size().next_multiple_of(HUGE_PAGE)
}

fn is_large(layout: Layout) -> bool {
    layout.size() >= HUGE_PAGE
}

/// Maps `len` bytes (a multiple of [`HUGE_PAGE`]) aligned to [`HUGE_PAGE`]:
/// one huge page more, then the unaligned ends given back.
fn map_aligned(len: usize) -> Option<NonNull<u8>> {
    let padded = len + HUGE_PAGE;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            padded,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return None;
    }
    let start = raw.cast::<u8>();
    let lead = start.align_offset(HUGE_PAGE);
    let tail = HUGE_PAGE - lead;
    // SAFETY: both ranges lie inside the mapping just made, and nothing
    // refers to them.
    unsafe {
        if lead > 0 {
            libc::munmap(start.cast(), lead);
        }
        if tail > 0 {
            libc::munmap(start.add(lead + len).cast(), tail);
        }
        let aligned = start.add(lead);
        // Advice only: where it is refused the table stays in small pages.
        #[cfg(target_os = "linux")]
        libc::madvise(aligned.cast(), len, libc::MADV_HUGEPAGE);
        NonNull::new(aligned)
    }
}

// SAFETY: a large block is a mapping of its own, valid until `deallocate`
// unmaps it, and at least as aligned as any table needs (2 MiB); small
// blocks are the global allocator's. `deallocate` tells the two apart by the
// layout, which is the one the block was allocated with.
unsafe impl Allocator for TableMemory {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !is_large(layout) || layout.align() > HUGE_PAGE {
            return Global.allocate(layout);
        }
        let len = mapped_len(layout);
        let start = map_aligned(len).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(start, len))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if !is_large(layout) || layout.align() > HUGE_PAGE {
            // SAFETY: the caller passes a block this allocator made with
            // `layout`, which for this layout came from `Global`.
            return unsafe { Global.deallocate(ptr, layout) };
        }
        // SAFETY: the block is the whole mapping `allocate` made for this
        // layout, and the caller no longer uses it.
        unsafe {
            libc::munmap(ptr.as_ptr().cast(), mapped_len(layout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the kernel may back the mapping starting at `start` with
    /// huge pages (`THPeligible` in `/proc/self/smaps`); `None` where that
    /// cannot be told: not Linux, or huge pages switched off on this host.
    fn huge_page_eligible(start: usize) -> Option<bool> {
        let enabled = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if enabled.map_or(true, |e| e.contains("[never]")) {
            return None;
        }
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let header = format!("{start:x}-");
        let mapping = smaps.split_once(&header)?.1;
        let line = mapping.lines().find(|l| l.starts_with("THPeligible:"))?;
        Some(line.split_whitespace().nth(1) == Some("1"))
    }

    #[test]
    fn large_blocks_are_huge_page_mappings_and_small_ones_are_not() {
        let large = Layout::from_size_align(HUGE_PAGE + 100, 16).unwrap();
        let block = TableMemory.allocate(large).unwrap();
        assert_eq!(block.len(), 2 * HUGE_PAGE, "whole huge pages");
        let start = block.cast::<u8>();
        assert_eq!(start.as_ptr().addr() % HUGE_PAGE, 0, "aligned to 2 MiB");
        if let Some(eligible) = huge_page_eligible(start.as_ptr().addr()) {
            assert!(eligible, "the mapping is marked for huge pages");
        }
        // The whole block is writable, and fresh mappings read as zeros.
        // SAFETY: the block is `block.len()` bytes, just allocated.
        unsafe {
            assert_eq!(*start.as_ptr().add(block.len() - 1), 0);
            std::ptr::write_bytes(start.as_ptr(), 0xab, block.len());
            TableMemory.deallocate(start, large);
        }
        let small = Layout::from_size_align(4096, 16).unwrap();
        let block = TableMemory.allocate(small).unwrap();
        // SAFETY: as above.
        unsafe {
            std::ptr::write_bytes(block.cast::<u8>().as_ptr(), 1, 4096);
            TableMemory.deallocate(block.cast(), small);
        }
    }
}
