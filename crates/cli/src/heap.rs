//! glibc heap settings: peak memory that follows the work at hand, not its history.

/// Keeps freed message buffers from piling up in glibc's heap. glibc serves a block of
/// 128 KiB or more with its own mmap, but after the first such block is freed it raises
/// that threshold to the block's size (up to 32 MiB): from then on every message body of a
/// few MiB comes from the heap arenas (one per thread) and stays there when freed, so peak
/// memory grew with the size of the messages synced. A fixed threshold turns the
/// adjustment off, and two arenas are plenty for a process that runs two workers.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives the pages of freed memory back to the system when a folder is done: its listings
/// (tens of thousands of small blocks) are freed by then, and the free pages they leave
/// between live blocks would otherwise count towards the next folder's peak. Only when
/// that is worth it ([`TRIM_OVER`] bytes free): each page given back is faulted in again
/// by the next folder, about a thousand faults a run for ten folders of 2000 messages.
pub struct TrimAfterFolder;

/// Free heap bytes above which a finished folder's memory is given back.
const TRIM_OVER: usize = 4 << 20;

impl oi_core::EventSink for TrimAfterFolder {
    fn emit(&self, event: oi_core::Event) {
        if matches!(event, oi_core::Event::FolderDone { .. }) {
            trim();
        }
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        if libc::mallinfo2().fordblks > TRIM_OVER {
            libc::malloc_trim(0);
        }
    }
}
