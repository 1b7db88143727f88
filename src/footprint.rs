//! What a replica holds at rest. mimalloc reserves its first arena before `main`, commits it
//! eagerly and asks the kernel for transparent huge pages on it (`madvise`), so a mostly idle
//! exporter kept whole 2 MiB pages it barely used: 18 of the leader's 22 MiB of anonymous memory
//! at 100 occurrences/s, 8 of a standby's 10 (bench, steady phase). The container image also sets
//! `MIMALLOC_ARENA_EAGER_COMMIT=0`; `cargo run`, a binary from a release or any other packaging
//! did not, so the program settles it itself, before anything is allocated.

/// Runs before every constructor without a priority (mimalloc's among them) and before `main`:
/// from the first page the allocator touches, no transparent huge pages for this process (the
/// flag covers every mapping, `madvise`d or not; children inherit it). mimalloc's own switch,
/// MIMALLOC_ALLOW_THP, is left to whoever sets it.
#[cfg(target_os = "linux")]
extern "C" fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag of this process;
        // a kernel without it answers EINVAL, which changes nothing.
        let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

// Priorities up to 100 are the C runtime's; 101 is the first one for programs.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array.00101")]
static NO_TRANSPARENT_HUGE_PAGES: extern "C" fn() = no_transparent_huge_pages;
